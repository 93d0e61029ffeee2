"""Derives the operator-owned part of an InferenceDeployment's status from what it observes.

Pure: the owned Deployment, its pods, the Service's EndpointSlices and the pods' start-failure
Events (plus the spec verdict) in; the status fields the operator core owns, and the Events worth
emitting for their transitions, out. Ready counts come from what serves (builders.serving), not from
the Deployment, whose readyReplicas lags a lost node by most of a minute; why pods are missing comes
from the pods, their Events and the Deployment's ReplicaFailure (pods the API server refused).
Conditions written by other writers (the autoscaler's SLOMet, MetricsUnavailable) are not touched:
the kube layer applies these fields with the operator's own field manager.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from berth_operator.api import Condition, InferenceDeploymentStatus
from berth_operator.api.status import (
    CONDITION_ACCEPTED,
    CONDITION_DEGRADED,
    CONDITION_PROGRESSING,
    CONDITION_READY,
    Phase,
)
from berth_operator.builders.cold_start import measure_cold_start
from berth_operator.builders.labels import REVISION_LABEL, selector_string
from berth_operator.builders.pod_problems import (
    PodProblem,
    bounded,
    is_pod_ready,
    is_pod_running,
    pod_problems,
)
from berth_operator.builders.serving import serving_pods

REASON_FAILED_CREATE = "FailedCreate"
REASON_ROLLED_BACK = "RolledBack"
REASON_ROLLOUT_FAILED = "RolloutFailed"
ROLLOUT_FAILURE_REASONS = (REASON_ROLLED_BACK, REASON_ROLLOUT_FAILED)
"""Told by the rollout planner's own Events (with the numbers): the conditions add none."""
OWNED_CONDITIONS = (CONDITION_ACCEPTED, CONDITION_READY, CONDITION_PROGRESSING, CONDITION_DEGRADED)
OWNED_FIELDS = (
    "observedGeneration",
    "phase",
    "replicas",
    "readyReplicas",
    "updatedReplicas",
    "desiredReplicas",
    "ready",
    "selector",
    "revision",
    "endpoint",
    "conditions",
    "coldStart",
)


@dataclass(frozen=True)
class SpecVerdict:
    """The operator's verdict on a spec, shown as the Accepted condition: accepted, or why not (a spec
    that cannot be parsed, a GPU product not offered, a missing Secret, a child name held by another
    object, a child the API server refused)."""

    accepted: bool
    reason: str
    message: str


@dataclass(frozen=True)
class StatusEvent:
    """A Kubernetes Event to emit on the InferenceDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class StatusInputs:
    """Everything the status is derived from."""

    name: str
    observed_generation: int | None
    verdict: SpecVerdict
    target_revision: str | None
    desired_replicas: int
    endpoint: str | None
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]]
    endpoint_slices: list[dict[str, Any]]
    """EndpointSlices of the InferenceDeployment's Service: which pods serve."""
    pod_events: list[dict[str, Any]]
    """Warning Events of pods awaiting their first container (read only when such pods exist)."""
    previous: InferenceDeploymentStatus
    now: datetime


@dataclass(frozen=True)
class _Counts:
    replicas: int
    ready: int
    """Pods that serve (ready endpoints of the Service), not the Deployment's readyReplicas."""
    updated: int
    available: int


def _counts(inputs: StatusInputs, serving: list[dict[str, Any]]) -> _Counts:
    status = (inputs.deployment or {}).get("status", {})
    on_target = [
        pod
        for pod in inputs.pods
        if not pod.get("metadata", {}).get("deletionTimestamp")
        and pod.get("metadata", {}).get("labels", {}).get(REVISION_LABEL) == inputs.target_revision
    ]
    return _Counts(
        replicas=status.get("replicas", 0),
        ready=len(serving),
        updated=len(on_target),
        available=status.get("availableReplicas", 0),
    )


def _replica_failure(deployment: dict[str, Any] | None) -> str | None:
    """The API server's refusal to create pods (the ReplicaSet's FailedCreate, which the Deployment
    carries as its ReplicaFailure condition): a missing ServiceAccount or PriorityClass, a quota, an
    admission webhook, an invalid pod. Without it status would only say 0/N ready."""
    for condition in (deployment or {}).get("status", {}).get("conditions", []):
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return bounded(str(condition.get("message") or "the ReplicaSet could not create pods"), 1024)
    return None


def deadline_exceeded(deployment: dict[str, Any] | None) -> str | None:
    """The Deployment's ProgressDeadlineExceeded message, once it reports it for its current spec
    (a condition left from an earlier template does not count)."""
    if deployment is None:
        return None
    status = deployment.get("status", {})
    if status.get("observedGeneration", 0) < deployment.get("metadata", {}).get("generation", 0):
        return None
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return str(condition.get("message") or "the rollout made no progress before its deadline")
    return None


def _rollout_complete(inputs: StatusInputs, counts: _Counts) -> bool:
    deployment = inputs.deployment
    if deployment is None:
        return False
    observed = deployment.get("status", {}).get("observedGeneration", 0)
    on_target = deployment.get("metadata", {}).get("labels", {}).get(REVISION_LABEL) == inputs.target_revision
    desired = inputs.desired_replicas
    updated = deployment.get("status", {}).get("updatedReplicas", 0)
    return (
        observed >= deployment.get("metadata", {}).get("generation", 0)
        and on_target
        and updated >= desired
        and counts.replicas == desired
        and counts.available >= desired
    )


def _summarise(problems: list[PodProblem]) -> str:
    first = problems[0].message
    return first if len(problems) == 1 else f"{first} (and {len(problems) - 1} more pods)"


def _not_routed(inputs: StatusInputs, serving: list[dict[str, Any]]) -> str | None:
    """Why pods that say Ready do not count: the Service does not route to them (a lost node's pods
    until they are deleted; for a moment, a pod that just became ready)."""
    serving_names = {pod["metadata"].get("name") for pod in serving}
    names = sorted(
        str(pod["metadata"].get("name"))
        for pod in inputs.pods
        if is_pod_ready(pod) and pod["metadata"].get("name") not in serving_names
    )
    if not names:
        return None
    more = f" (and {len(names) - 1} more pods)" if len(names) > 1 else ""
    return (
        f"pod {names[0]} reports Ready but is not a ready endpoint of Service {inputs.name}"
        f" (is its node gone?){more}"
    )


def _current_revision(inputs: StatusInputs, serving: list[dict[str, Any]]) -> str | None:
    ready: list[str] = [
        str(pod["metadata"]["labels"][REVISION_LABEL])
        for pod in serving
        if REVISION_LABEL in pod.get("metadata", {}).get("labels", {})
    ]
    revisions = Counter(ready)
    if not revisions:
        return inputs.previous.revision.current if inputs.previous.revision else None
    best = max(revisions.values())
    if inputs.target_revision is not None and revisions.get(inputs.target_revision) == best:
        return inputs.target_revision
    return sorted(revision for revision, count in revisions.items() if count == best)[0]


def _condition(
    inputs: StatusInputs, condition_type: str, status: bool, reason: str, message: str
) -> Condition:
    text = "True" if status else "False"
    previous = inputs.previous.condition(condition_type)
    since = previous.last_transition_time if previous is not None and previous.status == text else inputs.now
    return Condition(
        type=condition_type,
        status=text,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=inputs.observed_generation,
    )


def _conditions_and_phase(
    inputs: StatusInputs, counts: _Counts, serving: list[dict[str, Any]]
) -> tuple[list[Condition], Phase]:
    verdict, desired, ready = inputs.verdict, inputs.desired_replicas, counts.ready
    accepted = _condition(inputs, CONDITION_ACCEPTED, verdict.accepted, verdict.reason, verdict.message)
    if not verdict.accepted:
        return [
            accepted,
            _condition(inputs, CONDITION_READY, False, verdict.reason, verdict.message),
            _condition(inputs, CONDITION_PROGRESSING, False, verdict.reason, verdict.message),
            _condition(inputs, CONDITION_DEGRADED, True, verdict.reason, verdict.message),
        ], "Failed"

    problems = pod_problems(inputs.pods, inputs.pod_events)
    unschedulable = [problem for problem in problems if problem.is_scheduling]
    failing = [problem for problem in problems if not problem.is_scheduling]
    replica_failure = _replica_failure(inputs.deployment)
    not_routed = _not_routed(inputs, serving)
    deadline = deadline_exceeded(inputs.deployment)
    complete = _rollout_complete(inputs, counts)
    summary = f"{ready}/{desired} replicas ready"

    if desired == 0:
        ready_condition = _condition(inputs, CONDITION_READY, True, "ScaledToZero", "0 replicas requested")
    elif ready >= desired:
        ready_condition = _condition(inputs, CONDITION_READY, True, "AllReplicasReady", summary)
    elif replica_failure is not None:
        message = f"{summary}; {replica_failure}"
        ready_condition = _condition(inputs, CONDITION_READY, False, REASON_FAILED_CREATE, message)
    elif unschedulable:
        message = f"{summary}; {_summarise(unschedulable)}"
        ready_condition = _condition(inputs, CONDITION_READY, False, "Unschedulable", message)
    elif failing:
        message = f"{summary}; {_summarise(failing)}"
        ready_condition = _condition(inputs, CONDITION_READY, False, failing[0].reason, message)
    elif not_routed is not None:
        message = f"{summary}; {not_routed}"
        ready_condition = _condition(inputs, CONDITION_READY, False, "NotServing", message)
    else:
        ready_condition = _condition(inputs, CONDITION_READY, False, "ReplicasNotReady", summary)

    rollout = inputs.previous.rollout
    rolled_back = (
        rollout is not None
        and rollout.phase == "RolledBack"
        and rollout.failed_revision is not None
        and rollout.failed_revision == inputs.target_revision
    )
    if rollout is not None and rollout.halted:
        progressing = _condition(inputs, CONDITION_PROGRESSING, False, REASON_ROLLOUT_FAILED, rollout.halted)
    elif rollout is not None and rollout.phase in ("Canary", "Promoting"):
        message = rollout.message or f"{rollout.phase} of revision {rollout.canary_revision}"
        progressing = _condition(inputs, CONDITION_PROGRESSING, True, rollout.phase, message)
    elif rolled_back and rollout is not None:
        message = rollout.message or f"revision {inputs.target_revision} was rolled back"
        progressing = _condition(inputs, CONDITION_PROGRESSING, False, REASON_ROLLED_BACK, message)
    elif deadline is not None:
        progressing = _condition(inputs, CONDITION_PROGRESSING, False, "ProgressDeadlineExceeded", deadline)
    elif complete:
        message = f"revision {inputs.target_revision} runs on all {desired} replicas"
        progressing = _condition(inputs, CONDITION_PROGRESSING, False, "RolloutComplete", message)
    elif unschedulable:
        progressing = _condition(
            inputs, CONDITION_PROGRESSING, True, "Unschedulable", _summarise(unschedulable)
        )
    else:
        message = f"{counts.updated}/{desired} replicas on revision {inputs.target_revision}; {summary}"
        progressing = _condition(inputs, CONDITION_PROGRESSING, True, "ReplicasUpdating", message)

    if replica_failure is not None:
        degraded = _condition(inputs, CONDITION_DEGRADED, True, REASON_FAILED_CREATE, replica_failure)
    elif failing:
        degraded = _condition(inputs, CONDITION_DEGRADED, True, failing[0].reason, _summarise(failing))
    elif progressing.reason in ROLLOUT_FAILURE_REASONS:
        degraded = _condition(inputs, CONDITION_DEGRADED, True, progressing.reason, progressing.message)
    elif deadline is not None:
        degraded = _condition(inputs, CONDITION_DEGRADED, True, "ProgressDeadlineExceeded", deadline)
    else:
        degraded = _condition(inputs, CONDITION_DEGRADED, False, "NoFailures", "no failing pods")

    phase: Phase
    if degraded.status == "True":
        phase = "Degraded"
    elif ready_condition.status == "True":
        phase = "Progressing" if progressing.status == "True" else "Ready"
    elif ready == 0 and not any(is_pod_running(pod) for pod in inputs.pods):
        phase = "Pending"
    else:
        phase = "Progressing"
    return [accepted, ready_condition, progressing, degraded], phase


def derive_status(inputs: StatusInputs) -> dict[str, Any]:
    """The operator-owned status fields, in wire form (camelCase, unset fields left out)."""
    serving = serving_pods(inputs.endpoint_slices, inputs.pods)
    counts = _counts(inputs, serving)
    conditions, phase = _conditions_and_phase(inputs, counts, serving)
    status = InferenceDeploymentStatus(
        observed_generation=inputs.observed_generation,
        phase=phase,
        replicas=counts.replicas,
        ready_replicas=counts.ready,
        updated_replicas=counts.updated,
        desired_replicas=inputs.desired_replicas,
        ready=f"{counts.ready}/{inputs.desired_replicas}",
        selector=selector_string(inputs.name),
        revision={"current": _current_revision(inputs, serving), "target": inputs.target_revision},
        endpoint=inputs.endpoint,
        conditions=conditions,
        cold_start=measure_cold_start(inputs.pods, inputs.target_revision, inputs.previous.cold_start),
    )
    return status.to_wire()


def owned_status(status: dict[str, Any]) -> dict[str, Any]:
    """The operator-owned fields of a full status (wire form), for comparing before writing."""
    owned = {key: status[key] for key in OWNED_FIELDS if key in status}
    if "conditions" in owned:
        mine = [c for c in owned["conditions"] if c.get("type") in OWNED_CONDITIONS]
        owned["conditions"] = sorted(mine, key=lambda condition: str(condition["type"]))
    return owned


def transition_events(previous: InferenceDeploymentStatus, current: dict[str, Any]) -> list[StatusEvent]:
    """Events for condition changes worth telling a person about."""
    events: list[StatusEvent] = []
    conditions = current.get("conditions", [])
    if any(c["type"] == CONDITION_ACCEPTED and c["status"] == "False" for c in conditions):
        # A refused spec: Ready and Degraded only mirror the refusal; one Event says it.
        conditions = [c for c in conditions if c["type"] == CONDITION_ACCEPTED]
    accepted_before = previous.condition(CONDITION_ACCEPTED)
    # Degraded only mirrored a refused spec; its clearing is told by the Ready event instead.
    was_accepted = accepted_before is None or accepted_before.status == "True"
    for condition in conditions:
        before = previous.condition(condition["type"])
        status, reason, message = condition["status"], condition["reason"], condition.get("message", "")
        changed = before is None or before.status != status or before.reason != reason
        if not changed:
            continue
        kind = condition["type"]
        if kind == CONDITION_READY and status == "True":
            events.append(StatusEvent("Normal", "Ready", message))
        elif kind == CONDITION_READY and reason == "Unschedulable":
            events.append(StatusEvent("Warning", "Unschedulable", message))
        elif kind == CONDITION_READY and before is not None and before.status == "True":
            events.append(StatusEvent("Warning", "NotReady", message))
        elif reason in ROLLOUT_FAILURE_REASONS:
            continue
        elif kind == CONDITION_DEGRADED and status == "True":
            events.append(StatusEvent("Warning", reason, message))
        elif kind == CONDITION_DEGRADED and before is not None and before.status == "True" and was_accepted:
            events.append(StatusEvent("Normal", "Recovered", message))
        elif kind == CONDITION_ACCEPTED and status == "False":
            events.append(StatusEvent("Warning", reason, message))
        elif kind == CONDITION_PROGRESSING and reason == "RolloutComplete":
            events.append(StatusEvent("Normal", "RolloutComplete", message))
    return events
