"""Startup, readiness and liveness probes, each in its own worker thread as in the kubelet's prober.

Why: "Ready" must mean the process answers, since EndpointSlices, rollouts and berth's status all
follow it. A worker per probe runs the handler (``httpGet`` with a named or numbered port,
``tcpSocket``, ``exec``) every ``periodSeconds`` after ``initialDelaySeconds``, with
``timeoutSeconds``, and reports a change only after ``successThreshold``/``failureThreshold``
consecutive results. Readiness starts failed, liveness and startup start unknown; the pod worker
starts readiness and liveness only once the container has started (its startup probe passed).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ExecRunner = Callable[[list[str], float], tuple[bool, str]]
"""(command, timeout seconds) -> (exited 0, output): runs an exec probe as the container would."""
ResultCallback = Callable[[str, bool | None, str], None]
"""(probe kind, thresholded result, failure message): True passed, False failed, None undecided
yet; called on every change of the result and on every failed attempt (message non-empty)."""

USER_AGENT = "kube-probe/1.35"


@dataclass(frozen=True)
class ProbeTiming:
    initial_delay_seconds: float = 0
    period_seconds: float = 10
    timeout_seconds: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, probe: Mapping[str, Any]) -> ProbeTiming:
        return cls(
            initial_delay_seconds=float(probe.get("initialDelaySeconds", 0)),
            period_seconds=float(probe.get("periodSeconds", 10)),
            timeout_seconds=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


def container_port(port: int | str, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')!r}")


def _http(
    action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, timeout: float
) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = container_port(action.get("port", 80), container)
    path = action.get("path") or "/"
    scheme = str(action.get("scheme", "HTTP")).lower()
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    headers.update({header["name"]: header["value"] for header in action.get("httpHeaders") or []})
    connection: http.client.HTTPConnection
    if scheme == "https":  # the kubelet does not verify probe certificates
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        return False, f'Get "{url}": {error}'
    finally:
        connection.close()
    if 200 <= status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


def _tcp(
    action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, timeout: float
) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = container_port(action.get("port", 0), container)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as error:
        return False, f"dial tcp {host}:{port}: {error}"


def run_handler(
    handler: Mapping[str, Any],
    container: Mapping[str, Any],
    pod_ip: str,
    timeout: float,
    run_exec: ExecRunner,
) -> tuple[bool, str]:
    """One probe (or httpGet/exec lifecycle hook) attempt: (passed, message when it did not)."""
    try:
        if "httpGet" in handler:
            return _http(handler["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in handler:
            return _tcp(handler["tcpSocket"], container, pod_ip, timeout)
        if "exec" in handler:
            return run_exec(list(handler["exec"].get("command") or []), timeout)
    except ValueError as error:
        return False, str(error)
    kinds = ", ".join(sorted(key for key in handler if key in ("grpc",))) or "no handler"
    return False, f"probe type {kinds} is not supported on a local node"


class ProbeWorker(threading.Thread):
    """Probes one container with one probe until stopped, reporting through ``on_result``."""

    def __init__(
        self,
        kind: str,
        probe: Mapping[str, Any],
        container: Mapping[str, Any],
        pod_ip: str,
        started_monotonic: float,
        run_exec: ExecRunner,
        on_result: ResultCallback,
    ) -> None:
        super().__init__(name=f"probe-{kind}-{container.get('name')}", daemon=True)
        self.kind = kind
        self._probe = probe
        self._timing = ProbeTiming.of(probe)
        self._container = container
        self._pod_ip = pod_ip
        self._container_started = started_monotonic
        self._run_exec = run_exec
        self._on_result = on_result
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        timing = self._timing
        delay = self._container_started + timing.initial_delay_seconds - time.monotonic()
        if delay > 0 and self._stop_event.wait(delay):
            return
        passed_in_a_row = failed_in_a_row = 0
        result: bool | None = None
        while not self._stop_event.is_set():
            began = time.monotonic()
            passed, message = run_handler(
                self._probe, self._container, self._pod_ip, timing.timeout_seconds, self._run_exec
            )
            if self._stop_event.is_set():
                return
            decided = result
            if passed:
                passed_in_a_row, failed_in_a_row = passed_in_a_row + 1, 0
                if passed_in_a_row >= timing.success_threshold:
                    decided = True
            else:
                passed_in_a_row, failed_in_a_row = 0, failed_in_a_row + 1
                if failed_in_a_row >= timing.failure_threshold:
                    decided = False
            if decided != result or not passed:
                result = decided
                self._on_result(self.kind, result, "" if passed else message or "probe failed")
            self._stop_event.wait(max(0.0, timing.period_seconds - (time.monotonic() - began)))
