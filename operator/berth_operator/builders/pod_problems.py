"""Reads why runtime pods are not serving: the scheduler's verdict, crash loops (with the container's
termination message), image pulls, missing secrets, failed pods -- and, for a pod stuck before its
first container starts, the kubelet's Warning Events, because a volume that cannot be mounted or a
sandbox that cannot be created never shows in pod status. The status builder turns these into
conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

UNSCHEDULABLE = "Unschedulable"
CONTAINER_RESTARTED = "ContainerRestarted"
# The runtime's exit status for a configuration it refuses (runtime_image/README.md: a flag, a
# model or a combination it cannot serve -- an unsupported architecture, a tensor-parallel size the
# heads do not divide, --quantization on a pre-quantized checkpoint). Restarting cannot fix it.
CONFIGURATION_REFUSED = "ConfigurationRefused"
CONFIGURATION_REFUSED_EXIT_CODE = 2
# Waiting reasons that will not resolve by waiting.
FAILING_WAIT_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# Waiting reasons of a pod whose first container has not started: volumes and sandbox come first.
STARTING_WAIT_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
# Warning Events (kubelet, attach/detach controller) that explain such a pod; pod status never does.
START_FAILURE_EVENT_REASONS = frozenset({"FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox"})
# Messages lifted from pods and Events into status stay readable in `kubectl get` and small in etcd.
MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class PodProblem:
    """One pod that cannot serve, and why (reason is CamelCase, message is for people)."""

    pod: str
    reason: str
    message: str

    @property
    def is_scheduling(self) -> bool:
        return self.reason == UNSCHEDULABLE


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` on one line, at most `limit` characters. A long one keeps its end: a traceback or a
    log tail (what a termination message often is) ends with the cause."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "..." + flat[-(limit - 3) :]


def _termination(status: dict[str, Any]) -> str:
    """How the container last ended: its current termination, else its previous one."""
    terminated = status.get("state", {}).get("terminated") or status.get("lastState", {}).get("terminated")
    if not terminated:
        return ""
    detail = f"; last exit code {terminated.get('exitCode')} ({terminated.get('reason') or 'Error'})"
    message = terminated.get("message")
    return f"{detail}: {bounded(message)}" if message else detail


def _refused_configuration(pod: str, status: dict[str, Any], kind: str) -> PodProblem | None:
    """A container whose last run ended with the runtime's refusal: say so, with its message, rather
    than a bare crash loop -- the cause is in the spec or the model, not in the pod."""
    terminated = status.get("state", {}).get("terminated") or status.get("lastState", {}).get("terminated")
    if status.get("ready") or not terminated or terminated.get("exitCode") != CONFIGURATION_REFUSED_EXIT_CODE:
        return None
    message = bounded(terminated.get("message") or "no message (see the container's log)")
    return PodProblem(
        pod,
        CONFIGURATION_REFUSED,
        f"pod {pod} {kind} {status.get('name')} refused its configuration "
        f"(exit code {CONFIGURATION_REFUSED_EXIT_CODE}; restarting will not help): {message}",
    )


def _restarted_after_crash(pod: str, status: dict[str, Any], kind: str) -> PodProblem | None:
    """A container that ended and was restarted and is not ready again yet: the kubelet restarts a
    first crash at once, so it never waits in CrashLoopBackOff -- without this the replica would
    show only as "not ready", not as the crash it is."""
    crashed = status.get("lastState", {}).get("terminated")
    if status.get("ready") or not status.get("restartCount") or not crashed:
        return None
    if crashed.get("exitCode") == 0 and crashed.get("reason") == "Completed":
        return None
    message = f"restarted (restart {status['restartCount']}) and not ready yet{_termination(status)}"
    return PodProblem(pod, CONTAINER_RESTARTED, f"pod {pod} {kind} {status.get('name')}: {message}")


def _container_problem(pod: str, status: dict[str, Any], init: bool) -> PodProblem | None:
    kind = "init container" if init else "container"
    refused = _refused_configuration(pod, status, kind)
    if refused is not None:
        return refused
    waiting = status.get("state", {}).get("waiting")
    if not waiting or waiting.get("reason") not in FAILING_WAIT_REASONS:
        return None if init else _restarted_after_crash(pod, status, kind)
    message = bounded(waiting.get("message") or waiting["reason"])
    return PodProblem(
        pod=pod,
        reason=waiting["reason"],
        message=f"pod {pod} {kind} {status.get('name')}: {message}{_termination(status)}",
    )


def _container_statuses(pod: dict[str, Any]) -> list[tuple[bool, dict[str, Any]]]:
    status = pod.get("status", {})
    return [
        (init, container_status)
        for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses"))
        for container_status in status.get(key, [])
    ]


def _failed_pod(name: str, pod: dict[str, Any]) -> PodProblem:
    status = pod.get("status", {})
    reason = status.get("reason") or "PodFailed"
    detail = status.get("message")
    if not detail:
        ended = (_termination(container) for _, container in _container_statuses(pod))
        detail = next((text.removeprefix("; ") for text in ended if text), reason)
    return PodProblem(name, reason, f"pod {name} failed: {bounded(detail)}")


def is_awaiting_start(pod: dict[str, Any]) -> bool:
    """No container of the pod has started: each waits in ContainerCreating or PodInitializing.

    Volumes are mounted and the sandbox created before the first (init) container starts, so only
    such a pod can be held back by what the kubelet reports in Events alone.
    """
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    statuses = _container_statuses(pod)
    return bool(statuses) and all(
        status.get("state", {}).get("waiting", {}).get("reason") in STARTING_WAIT_REASONS
        for _, status in statuses
    )


def _event_time(event: dict[str, Any]) -> datetime:
    stamp = (
        event.get("series", {}).get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("metadata", {}).get("creationTimestamp")
        or "1970-01-01T00:00:00Z"
    )
    return datetime.fromisoformat(str(stamp))


def _start_failure(name: str, pod: dict[str, Any], events: list[dict[str, Any]]) -> PodProblem | None:
    uid = pod.get("metadata", {}).get("uid")
    relevant = [
        event
        for event in events
        if event.get("type") == "Warning"
        and event.get("reason") in START_FAILURE_EVENT_REASONS
        and event.get("involvedObject", {}).get("kind") == "Pod"
        and event.get("involvedObject", {}).get("name") == name
        and (uid is None or event.get("involvedObject", {}).get("uid") in (None, uid))
    ]
    if not relevant:
        return None
    latest = max(relevant, key=_event_time)
    return PodProblem(name, str(latest["reason"]), f"pod {name}: {bounded(latest.get('message') or '')}")


def pod_problem(pod: dict[str, Any], events: list[dict[str, Any]] | None = None) -> PodProblem | None:
    """The most telling problem of one pod, or None when it is fine or merely starting.

    `events` are Warning Events about pods; they count only for a pod awaiting its first container.
    """
    metadata, status = pod.get("metadata", {}), pod.get("status", {})
    name = metadata.get("name", "?")
    if metadata.get("deletionTimestamp"):
        return None
    if status.get("phase") == "Failed":
        return _failed_pod(name, pod)
    for condition in status.get("conditions", []):
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == UNSCHEDULABLE
        ):
            message = condition.get("message") or "no node fits the pod"
            return PodProblem(name, UNSCHEDULABLE, f"pod {name}: {message}")
    for init, container_status in _container_statuses(pod):
        problem = _container_problem(name, container_status, init)
        if problem is not None:
            return problem
    if events and is_awaiting_start(pod):
        return _start_failure(name, pod, events)
    return None


def pod_problems(pods: list[dict[str, Any]], events: list[dict[str, Any]] | None = None) -> list[PodProblem]:
    """Problems of all pods, sorted by pod name so messages are stable between reconciles."""
    found = (pod_problem(pod, events) for pod in pods)
    return sorted((problem for problem in found if problem is not None), key=lambda problem: problem.pod)


def is_pod_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in pod.get("status", {}).get("conditions", [])
    )


def is_pod_running(pod: dict[str, Any]) -> bool:
    return bool(pod.get("status", {}).get("phase") == "Running")
