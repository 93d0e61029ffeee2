"""What the rollout planner sees of one InferenceDeployment's workloads at one moment.

The primary Deployment (`<name>`) runs the stable revision, or the target once it is rolled out or
promoted; the canary Deployment (`<name>-canary`) runs the target beside it during a canary. The
handler reads both and their pods and hands the counts over here, so that the plan is pure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from berth_operator.api.resources import GPU_RESOURCE
from berth_operator.builders.deployment import CANARY_TRACK, TRACK_LABEL
from berth_operator.builders.labels import REVISION_LABEL
from berth_operator.builders.pod_problems import is_pod_ready, pod_problems
from berth_operator.builders.status import deadline_exceeded


@dataclass(frozen=True)
class RolloutObservation:
    """One look at the workloads, the spec's target and the moment."""

    now: datetime
    target_revision: str
    desired_replicas: int
    """Replicas the resource asks for in all (spec.replicas or the autoscaler's decision)."""
    primary_revision: str | None
    """Revision of the live primary Deployment's pod template; None before it exists."""
    primary_replicas: int = 0
    primary_rolled_out: bool = False
    """The primary Deployment has brought every one of its replicas to its template and they are
    available (observedGeneration current, updated = replicas = spec.replicas = available)."""
    primary_ready: dict[str, int] = field(default_factory=dict)
    """Ready pods of the primary Deployment, by revision."""
    primary_gpu_starved: bool = False
    """A pod of the primary Deployment is Pending because no node has a free GPU."""
    deadline_exceeded: str | None = None
    """The primary Deployment's ProgressDeadlineExceeded message, if it reports one."""
    canary_exists: bool = False
    canary_replicas: int = 0
    canary_ready: int = 0
    """Ready pods of the canary Deployment on the revision under rollout."""
    canary_gpu_starved: bool = False
    problem: str | None = None
    """Why some pod cannot serve (the first pod problem), to name as a failure's cause."""
    stable_template_found: bool = True
    """Whether the stable revision's pod template can be restored (the live primary, or one of its
    ReplicaSets, still holds it): without it nothing can be rolled back to, or pinned for a canary."""
    action: str | None = None
    """A manual action asked for by annotation: promote or abort."""

    def primary_ready_on(self, revision: str | None) -> int:
        return self.primary_ready.get(revision, 0) if revision is not None else 0

    @property
    def ready_total(self) -> int:
        return sum(self.primary_ready.values()) + self.canary_ready


def waits_for_gpu(pod: dict[str, Any]) -> bool:
    """The scheduler left the pod Pending because no node has a free GPU (its PodScheduled
    condition says `Insufficient nvidia.com/gpu`)."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return any(
        condition.get("type") == "PodScheduled"
        and condition.get("status") == "False"
        and f"Insufficient {GPU_RESOURCE}" in str(condition.get("message") or "")
        for condition in pod.get("status", {}).get("conditions", [])
    )


def deployment_rolled_out(deployment: dict[str, Any] | None) -> bool:
    """Every replica of the Deployment runs its template and is available, as of its current spec."""
    if deployment is None:
        return False
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= deployment.get("metadata", {}).get("generation", 0)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and status.get("availableReplicas", 0) >= wanted
    )


@dataclass(frozen=True)
class Workloads:
    """The live objects one observation is made of."""

    primary: dict[str, Any] | None
    canary: dict[str, Any] | None
    pods: list[dict[str, Any]]


def revision_of(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    value = obj.get("metadata", {}).get("labels", {}).get(REVISION_LABEL)
    return str(value) if value is not None else None


def observe_workloads(
    now: datetime,
    target_revision: str,
    desired_replicas: int,
    workloads: Workloads,
    *,
    stable_template_found: bool,
    action: str | None,
) -> RolloutObservation:
    """The counts the plan needs, from the live Deployments and their pods."""
    primary_ready: Counter[str] = Counter()
    canary_ready = 0
    primary_starved = canary_starved = False
    for pod in workloads.pods:
        labels = pod.get("metadata", {}).get("labels", {})
        on_canary = labels.get(TRACK_LABEL) == CANARY_TRACK
        if on_canary:
            canary_starved |= waits_for_gpu(pod)
            canary_ready += is_pod_ready(pod) and labels.get(REVISION_LABEL) == target_revision
        else:
            primary_starved |= waits_for_gpu(pod)
            if is_pod_ready(pod) and REVISION_LABEL in labels:
                primary_ready[str(labels[REVISION_LABEL])] += 1
    problems = pod_problems(workloads.pods, [])
    primary, canary = workloads.primary, workloads.canary
    return RolloutObservation(
        now=now,
        target_revision=target_revision,
        desired_replicas=desired_replicas,
        primary_revision=revision_of(primary),
        primary_replicas=int((primary or {}).get("spec", {}).get("replicas", 0)),
        primary_rolled_out=deployment_rolled_out(primary),
        primary_ready=dict(primary_ready),
        primary_gpu_starved=primary_starved,
        deadline_exceeded=deadline_exceeded(primary),
        canary_exists=canary is not None,
        canary_replicas=int((canary or {}).get("spec", {}).get("replicas", 0)),
        canary_ready=canary_ready,
        canary_gpu_starved=canary_starved,
        problem=problems[0].message if problems else None,
        stable_template_found=stable_template_found,
        action=action,
    )
