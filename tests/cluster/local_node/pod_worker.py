"""One pod on a local node, from binding to deletion: the kubelet's pod worker, in one thread.

Why one thread per pod with a sync loop: like the kubelet's ``syncPod``, each pass looks at what
is (container snapshots) and does the next step (set up volumes, start the next init container,
restart an exited container once its back-off is over), then writes the status if it changed and
sleeps until woken (a process exited, a probe changed its verdict, the pod was updated) or until
the next back-off ends. Decisions read snapshots only, so no step holds a lock while it waits.

Deletion follows the kubelet: when the pod gets a deletionTimestamp, every running container gets
its preStop hook, then SIGTERM, then SIGKILL once ``deletionGracePeriodSeconds`` (counted from the
moment the deletion was seen) have passed; then the final status is written and the pod object is
deleted with ``gracePeriodSeconds: 0`` and a UID precondition.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.cluster.local_node.backoff import CrashLoopBackOff, go_duration
from tests.cluster.local_node.container import MINIMUM_GRACE_SECONDS, ContainerRunner
from tests.cluster.local_node.envvars import ContainerConfigError, PodFacts
from tests.cluster.local_node.events import EventRecorder
from tests.cluster.local_node.kube import Kube, KubeError
from tests.cluster.local_node.launch import ContainerCreateError, image_env, prepare_launch
from tests.cluster.local_node.network import AddressPool
from tests.cluster.local_node.records import Running, Terminated, Waiting, timestamp
from tests.cluster.local_node.status import OWN_CONDITIONS, PodView, pod_status
from tests.cluster.local_node.volumes import (
    MountError,
    VolumeSources,
    config_map_bytes,
    pod_folder,
    secret_bytes,
    set_up_volumes,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
SHUTDOWN_GRACE_SECONDS = 5.0
"""When the agent itself stops, containers get at most this long after SIGTERM (no preStop)."""
IDLE_SYNC_SECONDS = 5.0
RETRY_SECONDS = 1.0
MOUNT_EVENT_SECONDS = 10.0


@dataclass(frozen=True)
class NodeContext:
    """What every pod worker of one node shares."""

    kube: Kube
    node_name: str
    host_ip: str
    pool: AddressPool
    recorder: EventRecorder
    state_dir: Path
    backoff_initial_seconds: float
    backoff_max_seconds: float
    services: Mapping[str, str]

    @property
    def pods_root(self) -> Path:
        return self.state_dir / "pods"

    @property
    def claims_root(self) -> Path:
        return self.state_dir / "claims"


def _maybe(found: dict[str, Any] | None, convert: Callable[[dict[str, Any]], T]) -> T | None:
    return None if found is None else convert(found)


def _config_map_text(config_map: dict[str, Any]) -> dict[str, str]:
    return dict(config_map.get("data") or {})  # env takes data only, as the kubelet does


def _secret_text(secret: dict[str, Any]) -> dict[str, str]:
    return {key: value.decode(errors="replace") for key, value in secret_bytes(secret).items()}


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


class PodWorker:
    def __init__(self, pod: dict[str, Any], context: NodeContext, on_done: Callable[[str], None]) -> None:
        metadata, spec = pod["metadata"], pod["spec"]
        self.uid: str = metadata["uid"]
        self._namespace: str = metadata["namespace"]
        self._name: str = metadata["name"]
        self._context = context
        self._on_done = on_done
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pod = pod
        self._deletion_seen: float | None = None
        self._gone = self._shutdown = self._terminal = False
        self._policy: str = spec.get("restartPolicy", "Always")
        self._grace = float(spec.get("terminationGracePeriodSeconds", 30))
        waiting = "PodInitializing" if spec.get("initContainers") else "ContainerCreating"
        self._init = [self._runner(container, waiting) for container in spec.get("initContainers") or []]
        self._main = [self._runner(container, waiting) for container in spec.get("containers") or []]
        self._host_network = bool(spec.get("hostNetwork"))
        self._pod_ip = ""
        self._sandbox_ready = False
        self._volume_paths: dict[str, Path] = {}
        self._start_time = timestamp()
        self._last_status: dict[str, Any] | None = None
        self._own_conditions: list[dict[str, Any]] = []
        self._restarts_recorded: dict[str, float] = {}
        self._folder = pod_folder(context.pods_root, pod)
        self._thread = threading.Thread(
            target=self._run, name=f"pod-{self._namespace}/{self._name}", daemon=True
        )
        self.update(pod)

    def _runner(self, container: Mapping[str, Any], waiting: str) -> ContainerRunner:
        name = container["name"]
        backoff = CrashLoopBackOff(self._context.backoff_initial_seconds, self._context.backoff_max_seconds)

        def emit(event_type: str, reason: str, message: str) -> None:
            self._context.recorder.pod_event(self._current(), event_type, reason, message, container=name)

        return ContainerRunner(container, backoff, waiting, self._wake.set, emit, self._grace)

    # -- inputs from the watch and the agent ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        with self._lock:
            self._pod = pod
            if pod["metadata"].get("deletionTimestamp") and self._deletion_seen is None:
                self._deletion_seen = time.monotonic()
        self._wake.set()

    def object_deleted(self) -> None:
        """The pod object is gone (force-deleted, or our own final delete)."""
        self._gone = True
        self._wake.set()

    def shut_down(self) -> None:
        self._shutdown = True
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _current(self) -> dict[str, Any]:
        with self._lock:
            return self._pod

    def _stopping(self) -> bool:
        return self._gone or self._shutdown or self._deletion_seen is not None

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    # -- the loop --------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._pod_ip = self._context.host_ip if self._host_network else self._context.pool.allocate()
            self._report()
            if self._set_up_sandbox():
                while not self._stopping():
                    wait = self._sync()
                    self._report()
                    self._sleep(wait)
            self._finish()
        except Exception:
            log.exception("pod %s/%s: worker failed", self._namespace, self._name)
        finally:
            self._stop_all(0.0, run_pre_stop=False)
            if self._pod_ip and not self._host_network:
                self._context.pool.release(self._pod_ip)
            self._context.recorder.forget(self.uid)
            shutil.rmtree(self._folder / "volumes", ignore_errors=True)
            self._on_done(self.uid)

    def _facts(self) -> PodFacts:
        return PodFacts(self._current(), self._pod_ip, self._context.host_ip)

    def _object(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self._context.kube.get_or_none(f"/api/v1/namespaces/{self._namespace}/{plural}/{name}")
        except KubeError as error:
            raise ContainerConfigError(f"couldn't get {plural} {self._namespace}/{name}: {error}") from None

    def _token(self, audience: str | None, expiration_seconds: int) -> str:
        account = self._current()["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": max(600, expiration_seconds),
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self._name, "uid": self.uid},
            },
        }
        path = f"/api/v1/namespaces/{self._namespace}/serviceaccounts/{account}/token"
        try:
            return str(self._context.kube.request("POST", path, body=body)["status"]["token"])
        except KubeError as error:
            raise ContainerConfigError(f"failed to fetch token: {error.message}") from None

    def _set_up_sandbox(self) -> bool:
        sources = VolumeSources(
            config_maps=lambda name: _maybe(self._object("configmaps", name), config_map_bytes),
            secrets=lambda name: _maybe(self._object("secrets", name), secret_bytes),
            token=self._token,
            facts=self._facts(),
        )
        last_event = -MOUNT_EVENT_SECONDS
        while not self._stopping():
            try:
                self._volume_paths = set_up_volumes(
                    self._current(), self._folder, self._context.claims_root, sources
                )
            except MountError as error:
                if time.monotonic() - last_event >= MOUNT_EVENT_SECONDS:
                    self._context.recorder.pod_event(self._current(), "Warning", "FailedMount", str(error))
                    last_event = time.monotonic()
                self._report()
                self._sleep(2 * RETRY_SECONDS)
                continue
            self._sandbox_ready = True
            return True
        return False

    def _sync(self) -> float:
        """One pass: start or restart what is due; returns how long to sleep at most."""
        now = time.monotonic()
        for runner in self._init:
            snapshot = runner.snapshot()
            if snapshot.succeeded:
                continue
            if isinstance(snapshot.state, Running) or (runner.runs and self._policy == "Never"):
                return IDLE_SYNC_SECONDS
            return self._advance(runner, now)
        wait = IDLE_SYNC_SECONDS
        for runner in self._main:
            snapshot = runner.snapshot()
            if isinstance(snapshot.state, Running):
                continue
            exited = snapshot.state if isinstance(snapshot.state, Terminated) else snapshot.last_state
            if runner.runs == 0 or (exited is not None and should_restart(self._policy, exited.exit_code)):
                wait = min(wait, self._advance(runner, now))
        return wait

    def _advance(self, runner: ContainerRunner, now: float) -> float:
        """Starts ``runner`` now, or puts it in CrashLoopBackOff until its back-off is over."""
        if runner.runs and self._restarts_recorded.get(runner.name) != runner.finished_monotonic:
            remaining = runner.backoff.remaining(runner.finished_monotonic, now)
            if remaining > 0:
                delay = go_duration(runner.backoff.delay_seconds or 0)
                pod = f"{self._name}_{self._namespace}({self.uid})"
                state = runner.snapshot().state
                if not (isinstance(state, Waiting) and state.reason == "CrashLoopBackOff"):
                    message = f"Back-off restarting failed container {runner.name} in pod {pod}"
                    self._context.recorder.pod_event(
                        self._current(), "Warning", "BackOff", message, container=runner.name
                    )
                runner.enter_backoff(f"back-off {delay} restarting failed container={runner.name} pod={pod}")
                return remaining
            runner.backoff.record_restart(runner.finished_monotonic, now)
            self._restarts_recorded[runner.name] = runner.finished_monotonic
        return self._try_start(runner)

    def _try_start(self, runner: ContainerRunner) -> float:
        try:
            launch = prepare_launch(
                runner.spec,
                self._facts(),
                self._volume_paths,
                lambda name: _maybe(self._object("configmaps", name), _config_map_text),
                lambda name: _maybe(self._object("secrets", name), _secret_text),
                image_env(self._name, self._folder / "home"),
                self._context.services,
                self._folder / "root",
            )
        except (ContainerConfigError, ContainerCreateError) as error:
            config = isinstance(error, ContainerConfigError)
            reason = "CreateContainerConfigError" if config else "CreateContainerError"
            state = runner.snapshot().state
            if not (isinstance(state, Waiting) and state.message == str(error)):
                self._context.recorder.pod_event(
                    self._current(), "Warning", "Failed", f"Error: {error}", container=runner.name
                )
            runner.set_waiting(reason, str(error))
            return RETRY_SECONDS
        (self._folder / "home").mkdir(parents=True, exist_ok=True)
        runner.start(launch, self._folder / "logs", self._context.state_dir)
        return IDLE_SYNC_SECONDS

    # -- status ------------------------------------------------------------------------------------------
    def _report(self) -> None:
        pod = self._current()
        view = PodView(
            restart_policy=self._policy,
            init=tuple(runner.snapshot() for runner in self._init),
            main=tuple(runner.snapshot() for runner in self._main),
            sandbox_ready=self._sandbox_ready,
            host_ip=self._context.host_ip,
            start_time=self._start_time,
            pod_ip=self._pod_ip if self._sandbox_ready else None,
            terminal=self._terminal,
        )
        conditions = (pod.get("status") or {}).get("conditions") or []
        foreign = [condition for condition in conditions if condition.get("type") not in OWN_CONDITIONS]
        status = pod_status(view, [*self._own_conditions, *foreign], timestamp())
        if status == self._last_status:
            return
        path = f"/api/v1/namespaces/{self._namespace}/pods/{self._name}/status"
        try:
            self._context.kube.merge_patch(path, {"metadata": {"uid": self.uid}, "status": status})
        except KubeError as error:
            if error.status in (404, 409, 422):
                self._gone = error.status == 404 or self._gone
            log.warning("pod %s/%s: status not written: %s", self._namespace, self._name, error)
            return
        self._last_status = status
        self._own_conditions = [c for c in status["conditions"] if c["type"] in OWN_CONDITIONS]

    # -- stopping -------------------------------------------------------------------------------------------
    def _stop_all(self, grace_seconds: float, run_pre_stop: bool) -> None:
        """Stops every running container at once, each with its hook, SIGTERM and SIGKILL."""
        stoppers = [
            threading.Thread(target=runner.stop, args=(grace_seconds, "", run_pre_stop), daemon=True)
            for runner in [*self._init, *self._main]
            if isinstance(runner.snapshot().state, Running)
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def _finish(self) -> None:
        if self._shutdown:
            self._stop_all(min(self._grace, SHUTDOWN_GRACE_SECONDS), run_pre_stop=False)
            return
        if self._gone:
            self._stop_all(MINIMUM_GRACE_SECONDS, run_pre_stop=False)
            return
        metadata = self._current()["metadata"]
        grace = float(metadata.get("deletionGracePeriodSeconds", self._grace))
        spent = time.monotonic() - (self._deletion_seen or time.monotonic())
        self._stop_all(max(0.0, grace - spent), run_pre_stop=True)
        self._terminal = True
        self._report()
        self._delete()

    def _delete(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        path = f"/api/v1/namespaces/{self._namespace}/pods/{self._name}"
        while not (self._gone or self._shutdown):
            try:
                self._context.kube.request("DELETE", path, body=body)
                return
            except KubeError as error:
                if error.status in (404, 409):
                    return
                log.warning("pod %s/%s: delete failed, retrying: %s", self._namespace, self._name, error)
                self._sleep(RETRY_SECONDS)
