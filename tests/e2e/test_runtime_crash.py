"""kill -9 of one runtime process under light load: of two SmolLM2 replicas, one pod's runtime is
SIGKILLed by the PID the local node recorded for its container. The pod restarts (restartCount 1,
lastState exit code 137), the InferenceDeployment's status says a replica crashed and then returns
to Ready 2/2, the surviving replica answers throughout (asked directly, and the Service never runs
out of ready endpoints), and the streams that fail are only those that were on the killed replica.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]

from tests.cluster import launcher
from tests.cluster.local_node.process import PIDS_FILE
from tests.e2e.load import LoadGenerator
from tests.e2e.local_model import local_model, service_address
from tests.integration.endpoint_watch import ReadyEndpointWatch
from tests.integration.idep_reads import INSTANCE_LABEL, wait_idep_ready
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for


class CrashNotReported(AssertionError):
    """From the kill to the recovery, status said only that a replica was not ready, not that it crashed."""


pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "crash"
REPLICAS = 2
CONCURRENCY = 2
"""Light load: one stream per replica on average."""
MAX_TOKENS = 32
RUNTIME_PORT = 8000
CONTAINER = "runtime"
CONTAINER_ID_PREFIX = "berth-local://"
PROXY_LAG_SECONDS = 1.0
"""The Service proxy stops giving new connections to an endpoint within this long of its slice turning
unready (tests/cluster/test_service_proxy.py proves it; 5-11 ms measured)."""


def _pod(core: Any, namespace: str, name: str) -> Any:
    return core.read_namespaced_pod(name, namespace)


def _runtime_status(pod: Any) -> Any:
    return next(status for status in pod.status.container_statuses or [] if status.name == CONTAINER)


def _recorded_pid(pod: Any, local_node_dir: Path) -> int:
    """The PID of the pod's runtime container, as the local node recorded it: the container ID it
    wrote in the pod's status, checked against its record of every container process it started
    (PID and kernel start time, so a recycled PID is never the one killed)."""
    container_id = _runtime_status(pod).container_id or ""
    assert container_id.startswith(CONTAINER_ID_PREFIX), container_id
    pid = int(container_id.removeprefix(CONTAINER_ID_PREFIX))
    records = dict(line.split(" ", 1) for line in (local_node_dir / PIDS_FILE).read_text().splitlines())
    assert str(pid) in records, f"PID {pid} is not in the local node's {PIDS_FILE}"
    start_time = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert records[str(pid)] == start_time, f"PID {pid} was recycled since the local node recorded it"
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"berth_runtime" in command, command
    return pid


def _streams_on(pod_ip: str) -> int:
    """Requests running or waiting on the replica at `pod_ip`, from its own /metrics."""
    with urllib.request.urlopen(f"http://{pod_ip}:{RUNTIME_PORT}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("vllm:num_requests_running{", "vllm:num_requests_waiting{")):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class StatusLog:
    """Polls the InferenceDeployment's status four times a second and keeps each distinct summary
    (phase, ready, and the Ready, Progressing and Degraded conditions), so short-lived states are seen."""

    def __init__(self, custom: Any, namespace: str) -> None:
        self._custom = custom
        self._namespace = namespace
        self.states: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-log", daemon=True)

    def _summary(self) -> dict[str, Any]:
        resource = self._custom.get_namespaced_custom_object(
            "berth.dev", "v1alpha1", self._namespace, "inferencedeployments", NAME
        )
        status = resource.get("status") or {}
        conditions = {condition["type"]: condition for condition in status.get("conditions", [])}
        return {
            "phase": status.get("phase"),
            "ready": status.get("ready"),
            **{
                kind: (
                    conditions.get(kind, {}).get("status"),
                    conditions.get(kind, {}).get("reason"),
                    conditions.get(kind, {}).get("message"),
                )
                for kind in ("Ready", "Progressing", "Degraded")
            },
        }

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                summary = self._summary()
            except client.ApiException:
                continue
            if not self.states or self.states[-1][1] != summary:
                self.states.append((time.monotonic(), summary))

    def __enter__(self) -> StatusLog:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


class DirectAsker:
    """Sends one small chat completion after another straight to a pod's address (not through the
    Service), recording each as ok or the error: whether that replica kept answering."""

    def __init__(self, pod_ip: str, model: str) -> None:
        self._url = f"http://{pod_ip}:{RUNTIME_PORT}/v1/chat/completions"
        self._body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
        ).encode()
        self.answers: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="direct-asker", daemon=True)

    def _ask(self) -> str | None:
        request = urllib.request.Request(self._url, self._body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            return f"{type(error).__name__}: {error}"
        return None if answer["usage"]["completion_tokens"] >= 1 else f"no tokens: {answer}"

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.answers.append((time.monotonic(), self._ask()))

    def __enter__(self) -> DirectAsker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(35)


def test_a_killed_runtime_restarts_status_reports_it_and_only_its_own_streams_fail(
    local_bed: launcher.RunningCluster,
    bed: ClusterAccess,
    bed_namespace: str,
    bed_operator: OperatorProcess,
    bed_api: object,
) -> None:
    namespace = bed_namespace
    core = client.CoreV1Api(bed_api)
    custom = client.CustomObjectsApi(bed_api)
    manifest = local_model(NAME, replicas=REPLICAS)
    model = manifest["spec"]["model"]["name"]
    bed.apply(manifest, namespace=namespace)
    wait_idep_ready(bed, namespace, NAME, REPLICAS)
    url = service_address(bed, namespace, NAME)
    pods = sorted(
        core.list_namespaced_pod(namespace, label_selector=f"{INSTANCE_LABEL}={NAME}").items,
        key=lambda pod: pod.metadata.name,
    )
    assert len(pods) == REPLICAS
    victim, survivor = pods[0], pods[1]
    assert _runtime_status(victim).restart_count == 0

    load = LoadGenerator(url, model, CONCURRENCY, MAX_TOKENS, ramp_seconds=2.0)
    with (
        StatusLog(custom, namespace) as status_log,
        ReadyEndpointWatch(bed.kubeconfig, namespace, NAME) as endpoints,
        DirectAsker(survivor.status.pod_ip, model) as survivor_answers,
    ):
        load.start()
        try:
            time.sleep(6)  # streams in flight on both replicas
            pid = _recorded_pid(_pod(core, namespace, victim.metadata.name), local_bed.local_node_dir)
            counted_at = time.monotonic()
            on_victim = _streams_on(victim.status.pod_ip)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            unrouted_at = wait_for(
                lambda: time.monotonic() if endpoints.ready_count() < REPLICAS else None,
                30,
                "the killed replica's endpoint unready",
                interval=0.01,
            )

            def restarted() -> Any:
                status = _runtime_status(_pod(core, namespace, victim.metadata.name))
                return status if status.restart_count >= 1 and status.last_state.terminated else None

            runtime = wait_for(restarted, 60, f"pod {victim.metadata.name} restarted", interval=0.25)
            restarted_at = time.monotonic()
            wait_idep_ready(bed, namespace, NAME, REPLICAS)
            wait_for(lambda: endpoints.ready_count() == REPLICAS, 30, "both endpoints ready again")
            recovered_at = time.monotonic()
            time.sleep(4)  # streams on both replicas again
        finally:
            result = load.stop()

    terminated = runtime.last_state.terminated
    failed = [r for r in result.records if not r.complete(MAX_TOKENS)]
    failed_in_flight = [r for r in failed if r.started <= killed_at <= r.ended]
    failed_after = [r for r in failed if r.started > killed_at]
    # Streams on the victim at the kill: those its /metrics counted, plus any begun since that count,
    # plus any still on their way in at the count (sent, no first token yet: in the proxy or the
    # server's HTTP layer, which the scheduler's running/waiting gauges do not count yet).
    begun_since_count = [r for r in result.records if counted_at <= r.started <= killed_at]
    unadmitted_at_count = [
        r
        for r in result.records
        if r.started < counted_at
        and r.ended >= counted_at
        and (r.ttft_seconds is None or r.started + r.ttft_seconds > counted_at)
    ]
    survivor_failures = [error for _, error in survivor_answers.answers if error is not None]
    outage = [state for moment, state in status_log.states if killed_at <= moment <= recovered_at]
    print(
        f"\nSIGKILL of PID {pid} (pod {victim.metadata.name}, {on_victim} streams on it): restarted "
        f"{restarted_at - killed_at:.1f} s later (restartCount {runtime.restart_count}, lastState exit code "
        f"{terminated.exit_code} {terminated.reason}), Ready {REPLICAS}/{REPLICAS} again after "
        f"{recovered_at - killed_at:.1f} s; its endpoint unready +{unrouted_at - killed_at:.2f} s\n"
        f"load, {CONCURRENCY} streams: {result.summary()}; failed: {len(failed_in_flight)} in flight at the "
        f"kill, {len(failed_after)} begun after it: "
        + "; ".join(f"#{r.index} {r.error}" for r in failed)
        + f"\nsurvivor asked directly {len(survivor_answers.answers)} x, {len(survivor_failures)} failed; "
        f"fewest ready endpoints {endpoints.lowest_ready_count}\n"
        "status from the kill to recovery:\n" + "\n".join(f"  {json.dumps(state)}" for state in outage)
    )

    assert runtime.restart_count == 1, runtime
    assert terminated.exit_code == 128 + signal.SIGKILL, terminated
    # A stream fails only if it was on the killed replica: in flight there at the kill, or sent to it
    # before the Service stopped routing there.
    uncounted = len(begun_since_count) + len(unadmitted_at_count)
    assert len(failed_in_flight) <= on_victim + uncounted, (on_victim, uncounted, failed_in_flight)
    assert all(r.started <= unrouted_at + PROXY_LAG_SECONDS for r in failed_after), failed_after
    assert len(failed) == len(failed_in_flight) + len(failed_after), failed
    assert not survivor_failures, survivor_failures
    assert endpoints.lowest_ready_count is not None and endpoints.lowest_ready_count >= 1
    assert any(state["ready"] == f"{REPLICAS - 1}/{REPLICAS}" for state in outage), outage
    last = status_log.states[-1][1]
    assert last["phase"] == "Ready" and last["ready"] == f"{REPLICAS}/{REPLICAS}", last
    told = [
        state
        for state in outage
        if state["phase"] == "Degraded"
        or (state["Ready"][0] == "False" and "137" in f"{state['Ready'][1]} {state['Ready'][2]}")
    ]
    if not told:
        raise CrashNotReported(f"no status between the kill and recovery said the replica crashed: {outage}")
