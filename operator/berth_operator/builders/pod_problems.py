"""Reads why runtime pods are not serving from their status: the scheduler's verdict, crash loops,
image pulls, missing secrets, failed pods. The status builder turns these into conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNSCHEDULABLE = "Unschedulable"
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


@dataclass(frozen=True)
class PodProblem:
    """One pod that cannot serve, and why (reason is CamelCase, message is for people)."""

    pod: str
    reason: str
    message: str

    @property
    def is_scheduling(self) -> bool:
        return self.reason == UNSCHEDULABLE


def _last_termination(status: dict[str, Any]) -> str:
    terminated = status.get("lastState", {}).get("terminated")
    if not terminated:
        return ""
    detail = terminated.get("reason") or "Error"
    return f"; last exit code {terminated.get('exitCode')} ({detail})"


def _container_problem(pod: str, status: dict[str, Any], init: bool) -> PodProblem | None:
    waiting = status.get("state", {}).get("waiting")
    if not waiting or waiting.get("reason") not in FAILING_WAIT_REASONS:
        return None
    kind = "init container" if init else "container"
    message = waiting.get("message") or waiting["reason"]
    return PodProblem(
        pod=pod,
        reason=waiting["reason"],
        message=f"pod {pod} {kind} {status.get('name')}: {message}{_last_termination(status)}",
    )


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The most telling problem of one pod, or None when it is fine or merely starting."""
    metadata, status = pod.get("metadata", {}), pod.get("status", {})
    name = metadata.get("name", "?")
    if metadata.get("deletionTimestamp"):
        return None
    if status.get("phase") == "Failed":
        reason = status.get("reason") or "PodFailed"
        return PodProblem(name, reason, f"pod {name} failed: {status.get('message') or reason}")
    for condition in status.get("conditions", []):
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == UNSCHEDULABLE
        ):
            message = condition.get("message") or "no node fits the pod"
            return PodProblem(name, UNSCHEDULABLE, f"pod {name}: {message}")
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for container_status in status.get(key, []):
            problem = _container_problem(name, container_status, init)
            if problem is not None:
                return problem
    return None


def pod_problems(pods: list[dict[str, Any]]) -> list[PodProblem]:
    """Problems of all pods, sorted by pod name so messages are stable between reconciles."""
    found = (pod_problem(pod) for pod in pods)
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
