"""One container of a pod across its restarts: its process, probes, stop sequence and bookkeeping.

Why: everything that happens to a single container (start, exit, probe verdicts, a liveness kill,
the preStop hook, SIGTERM then SIGKILL) happens on different threads; keeping it in one object
with one lock makes each transition atomic, and the pod worker only decides *when* (init order,
restart policy, back-off) from ``snapshot()``. Restarts follow the kubelet: the previous run's
Terminated state becomes ``lastState`` when the container leaves it, and every new run counts in
``restartCount``.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.cluster.local_node.backoff import CrashLoopBackOff
from tests.cluster.local_node.launch import Launch
from tests.cluster.local_node.probes import ProbeWorker, run_handler
from tests.cluster.local_node.process import (
    ContainerProcess,
    StartFailure,
    exit_status,
    start_process,
    termination_message,
)
from tests.cluster.local_node.records import (
    ContainerSnapshot,
    ContainerState,
    Running,
    Terminated,
    Waiting,
    termination_reason,
    timestamp,
)

EventSink = Callable[[str, str, str], None]
"""(type, reason, message): an Event about this container."""
MINIMUM_GRACE_SECONDS = 2.0
"""The kubelet gives a container at least this long after SIGTERM, even when the hook used the rest."""


class ContainerRunner:
    def __init__(
        self,
        spec: Mapping[str, Any],
        backoff: CrashLoopBackOff,
        waiting_reason: str,
        wake: Callable[[], None],
        emit: EventSink,
        grace_seconds: float,
    ) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.backoff = backoff
        self._wake = wake
        self._emit = emit
        self._grace_seconds = grace_seconds
        self._lock = threading.Lock()
        self._state: ContainerState = Waiting(waiting_reason)
        self._last_state: Terminated | None = None
        self._restart_count = 0
        self._runs = 0
        self._ready = False
        self._started = False
        self._process: ContainerProcess | None = None
        self._exited = threading.Event()
        self._probes: list[ProbeWorker] = []
        self._launch: Launch | None = None
        self.finished_monotonic = 0.0
        """When the latest run ended (monotonic seconds), the back-off's event time."""

    # -- what the pod worker reads ---------------------------------------------------------------
    def snapshot(self) -> ContainerSnapshot:
        with self._lock:
            state = self._state
            container_id = self._process.container_id if self._process else ""
            if isinstance(state, Terminated):
                container_id = state.container_id
            return ContainerSnapshot(
                name=self.name,
                image=str(self.spec.get("image", "")),
                state=state,
                last_state=self._last_state,
                ready=self._ready,
                started=self._started,
                restart_count=self._restart_count,
                container_id=container_id,
            )

    @property
    def runs(self) -> int:
        return self._runs

    def _set_state(self, state: ContainerState) -> None:
        if isinstance(self._state, Terminated) and not isinstance(state, Terminated):
            self._last_state = self._state
        self._state = state

    def set_waiting(self, reason: str, message: str = "") -> None:
        with self._lock:
            if not isinstance(self._state, Running):
                self._set_state(Waiting(reason, message))

    # -- a run -------------------------------------------------------------------------------------
    def start(self, launch: Launch, log_dir: Path, state_dir: Path) -> None:
        with self._lock:
            if self._runs:
                self._restart_count += 1
            self._runs += 1
            run = self._runs
            self._launch = launch
            self._exited = threading.Event()
        log_path = log_dir / self.name / f"{self._restart_count}.log"
        try:
            process = start_process(launch.argv, launch.env, launch.cwd, log_path, state_dir)
        except StartFailure as error:
            now = timestamp()
            with self._lock:
                self._set_state(Terminated(128, "StartError", now, now, "", str(error)))
                self.finished_monotonic = time.monotonic()
                self._exited.set()
            self._emit("Warning", "Failed", f"Error: {error}")
            self._wake()
            return
        with self._lock:
            self._process = process
            self._set_state(Running(process.started_at))
            self._started = "startupProbe" not in self.spec
            self._ready = self._started and "readinessProbe" not in self.spec  # no probe: ready once started
        self._emit("Normal", "Started", f"Started container {self.name}")
        threading.Thread(
            target=self._wait, args=(process, run), name=f"wait-{self.name}", daemon=True
        ).start()
        if "startupProbe" in self.spec:
            self._start_probes(run, ("startupProbe",), process)
        else:
            self._start_probes(run, ("readinessProbe", "livenessProbe"), process)

    def _start_probes(self, run: int, kinds: tuple[str, ...], process: ContainerProcess) -> None:
        for kind in kinds:
            if kind not in self.spec:
                continue
            worker = ProbeWorker(
                kind.removesuffix("Probe"),
                self.spec[kind],
                self.spec,
                self._pod_ip(),
                process.started_monotonic,
                self.run_exec,
                functools.partial(self._on_probe, run),
            )
            with self._lock:
                if run != self._runs or self._process is not process:
                    return
                self._probes.append(worker)
            worker.start()

    def _pod_ip(self) -> str:
        return self._launch.pod_ip if self._launch else ""

    def _stop_probes_locked(self) -> None:
        for worker in self._probes:
            worker.stop()
        self._probes = []

    def _wait(self, process: ContainerProcess, run: int) -> None:
        exit_code, signum = exit_status(process.wait())
        message = termination_message(process.log_path) if exit_code != 0 else ""
        finished = Terminated(
            exit_code, termination_reason(exit_code), process.started_at, timestamp(), process.container_id,
            message, signum,
        )  # fmt: skip
        with self._lock:
            if run == self._runs:
                self._stop_probes_locked()
                self._set_state(finished)
                self._ready = self._started = False
                self._process = None
                self.finished_monotonic = time.monotonic()
            self._exited.set()
        self._wake()

    def _on_probe(self, run: int, kind: str, result: bool | None, message: str) -> None:
        with self._lock:
            if run != self._runs or self._process is None:
                return
            process = self._process
        if message:
            self._emit("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}")
        if kind == "startup" and result is True:
            with self._lock:
                self._started = True
                self._ready = "readinessProbe" not in self.spec
            self._start_probes(run, ("readinessProbe", "livenessProbe"), process)
        elif kind == "readiness":
            with self._lock:
                self._ready = result is True
        elif kind in ("startup", "liveness") and result is False:
            reason = f"Container {self.name} failed {kind} probe, will be restarted"
            threading.Thread(target=self.stop, args=(self._grace_seconds, reason), daemon=True).start()
        self._wake()

    def run_exec(self, command: list[str], timeout: float) -> tuple[bool, str]:
        """Runs an exec probe or hook as this container would: same env, folder and substitutions."""
        launch = self._launch
        if launch is None:
            return False, "container not started"
        try:
            result = subprocess.run(
                launch.exec_argv(command),
                env=launch.env,
                cwd=launch.cwd,
                capture_output=True,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, str(error)
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        return result.returncode == 0, output or f"command exited {result.returncode}"

    # -- stopping ------------------------------------------------------------------------------------
    def _pre_stop(self, deadline: float) -> None:
        hook = (self.spec.get("lifecycle") or {}).get("preStop")
        if not hook:
            return
        remaining = max(0.0, deadline - time.monotonic())
        if "sleep" in hook:
            time.sleep(min(float(hook["sleep"].get("seconds", 0)), remaining))
            return
        passed, message = run_handler(hook, self.spec, self._pod_ip(), remaining, self.run_exec)
        if not passed:
            self._emit("Warning", "FailedPreStopHook", f"PreStopHook failed: {message}")

    def stop(self, grace_seconds: float, reason: str = "", run_pre_stop: bool = True) -> None:
        """preStop hook, SIGTERM, and SIGKILL once ``grace_seconds`` (counted from now) are spent."""
        deadline = time.monotonic() + grace_seconds
        with self._lock:
            process, exited = self._process, self._exited
            if process is None:
                return
            self._stop_probes_locked()
            self._ready = False
        self._emit("Normal", "Killing", reason or f"Stopping container {self.name}")
        if run_pre_stop:
            self._pre_stop(deadline)
        process.signal(signal.SIGTERM)
        if not exited.wait(max(deadline - time.monotonic(), MINIMUM_GRACE_SECONDS)):
            process.signal(signal.SIGKILL)
            exited.wait(10)

    def enter_backoff(self, message: str) -> None:
        with self._lock:
            if isinstance(self._state, Terminated) or (
                isinstance(self._state, Waiting) and self._state.reason == "CrashLoopBackOff"
            ):
                self._set_state(Waiting("CrashLoopBackOff", message))
