"""Pod status from container snapshots: phase, conditions and container statuses, as the kubelet writes them.

Why: controllers (ReplicaSet, EndpointSlice, PDB), kubectl and berth's operator read only
``pod.status``; it must say what the processes are doing in exactly the kubelet's terms. These are
pure functions (ports of ``getPhase`` and the condition generators in pkg/kubelet/status), so each
rule is pinned by a unit test instead of being discovered through a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.cluster.local_node.records import (
    ContainerSnapshot,
    ContainerState,
    Running,
    Terminated,
    Waiting,
)

OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


@dataclass(frozen=True)
class PodView:
    """Everything the pod's status is derived from, at one moment."""

    restart_policy: str
    init: tuple[ContainerSnapshot, ...]
    main: tuple[ContainerSnapshot, ...]
    sandbox_ready: bool
    host_ip: str
    start_time: str
    pod_ip: str | None = None
    terminal: bool = False
    """The pod was deleted and every container has stopped: its phase becomes final."""


def state_dict(state: ContainerState) -> dict[str, Any]:
    if isinstance(state, Waiting):
        waiting = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    terminated: dict[str, Any] = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": state.started_at,
        "finishedAt": state.finished_at,
        "containerID": state.container_id,
    }
    if state.message:
        terminated["message"] = state.message
    if state.signal is not None:
        terminated["signal"] = state.signal
    return {"terminated": terminated}


def container_status(snapshot: ContainerSnapshot) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": snapshot.name,
        "image": snapshot.image,
        "imageID": "",
        "ready": snapshot.ready,
        "started": snapshot.started,
        "restartCount": snapshot.restart_count,
        "state": state_dict(snapshot.state),
        "lastState": state_dict(snapshot.last_state) if snapshot.last_state else {},
    }
    if snapshot.container_id:
        status["containerID"] = snapshot.container_id
    return status


def _init_counts(init: Sequence[ContainerSnapshot]) -> tuple[int, int]:
    """(pending, failed) regular init containers, counted as getPhase counts them."""
    pending = failed = 0
    for snapshot in init:
        state = snapshot.state
        if isinstance(state, Terminated):
            failed += state.exit_code != 0
        elif isinstance(state, Waiting) and snapshot.last_state is not None:
            failed += snapshot.last_state.exit_code != 0
        else:
            pending += 1
    return pending, failed


def pod_phase(view: PodView) -> str:
    """The kubelet's getPhase (without sidecar init containers or container restart rules)."""
    pending_init, failed_init = _init_counts(view.init)
    running = waiting = stopped = succeeded = 0
    for snapshot in view.main:
        state = snapshot.state
        if isinstance(state, Running):
            running += 1
        elif isinstance(state, Terminated):
            stopped += 1
            succeeded += state.exit_code == 0
        elif snapshot.last_state is not None:
            stopped += 1  # waiting to restart after an exit
        else:
            waiting += 1
    if failed_init and view.restart_policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if view.terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if view.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if view.restart_policy == "Never" else "Running"
    return "Pending"


def _go_list(names: Iterable[str]) -> str:
    return "[" + " ".join(names) + "]"


def own_conditions(view: PodView, phase: str) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of the conditions the kubelet owns."""
    conditions = [("PodReadyToStartContainers", "True" if view.sandbox_ready else "False", "", "")]
    incomplete = [snapshot.name for snapshot in view.init if not snapshot.succeeded]
    if incomplete and phase not in ("Succeeded", "Failed"):
        message = f"containers with incomplete status: {_go_list(incomplete)}"
        conditions.append(("Initialized", "False", "ContainersNotInitialized", message))
    elif incomplete:
        conditions.append(("Initialized", "False", "PodCompleted", ""))
    else:
        conditions.append(("Initialized", "True", "", ""))
    unready = [snapshot.name for snapshot in view.main if not snapshot.ready]
    if phase in ("Succeeded", "Failed"):
        ready = ("False", "PodCompleted", "")
    elif unready:
        ready = ("False", "ContainersNotReady", f"containers with unready status: {_go_list(unready)}")
    else:
        ready = ("True", "", "")
    conditions.append(("Ready", *ready))
    conditions.append(("ContainersReady", *ready))
    return conditions


def merge_conditions(
    previous: Sequence[dict[str, Any]], own: Sequence[tuple[str, str, str, str]], now: str
) -> list[dict[str, Any]]:
    """Ours replace their earlier selves (keeping lastTransitionTime while the status holds);
    conditions others own (PodScheduled from the scheduler, DisruptionTarget) are kept as they are."""
    by_type = {condition.get("type"): condition for condition in previous}
    merged: list[dict[str, Any]] = []
    for condition_type, status, reason, message in own:
        before = by_type.get(condition_type)
        changed = before is None or before.get("status") != status
        condition: dict[str, Any] = {
            "type": condition_type,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": now if changed or before is None else before.get("lastTransitionTime", now),
        }
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        merged.append(condition)
    merged.extend(condition for condition in previous if condition.get("type") not in OWN_CONDITIONS)
    return merged


def pod_status(view: PodView, previous_conditions: Sequence[dict[str, Any]], now: str) -> dict[str, Any]:
    """The whole ``status`` the agent writes (as a JSON merge patch: lists replace their old selves)."""
    phase = pod_phase(view)
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": merge_conditions(previous_conditions, own_conditions(view, phase), now),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "containerStatuses": [container_status(snapshot) for snapshot in view.main],
    }
    if view.init:
        status["initContainerStatuses"] = [container_status(snapshot) for snapshot in view.init]
    if view.pod_ip is not None:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    return status
