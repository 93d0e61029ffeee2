"""Status derivation: phase and conditions follow the Deployment and pods; Events mark transitions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from status_factories import NOW, TARGET, conditions_of, make_deployment, make_inputs, make_pod

from berth_operator.api import InferenceDeploymentStatus
from berth_operator.builders.pod_problems import pod_problem
from berth_operator.builders.status import (
    SpecVerdict,
    StatusInputs,
    derive_status,
    owned_status,
    transition_events,
)

UNSCHEDULABLE = make_pod(
    "chat-2",
    phase="Pending",
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        }
    ],
)
CRASHING = make_pod(
    "chat-3",
    containerStatuses=[
        {
            "name": "runtime",
            "state": {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": "back-off 5m0s restarting failed container",
                }
            },
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        }
    ],
)


@pytest.mark.parametrize(
    ("deployment", "pods", "desired", "phase", "ready", "progressing", "degraded"),
    [
        (
            None,
            [],
            2,
            "Pending",
            ("False", "ReplicasNotReady"),
            ("True", "ReplicasUpdating"),
            ("False", "NoFailures"),
        ),
        (
            make_deployment(2, 0, 2),
            [make_pod("chat-1", phase="Pending"), UNSCHEDULABLE],
            2,
            "Pending",
            ("False", "Unschedulable"),
            ("True", "Unschedulable"),
            ("False", "NoFailures"),
        ),
        (
            make_deployment(2, 1, 2),
            [make_pod("chat-1", ready=True), make_pod("chat-2")],
            2,
            "Progressing",
            ("False", "ReplicasNotReady"),
            ("True", "ReplicasUpdating"),
            ("False", "NoFailures"),
        ),
        (
            make_deployment(2, 2, 2),
            [make_pod("chat-1", ready=True), make_pod("chat-2", ready=True)],
            2,
            "Ready",
            ("True", "AllReplicasReady"),
            ("False", "RolloutComplete"),
            ("False", "NoFailures"),
        ),
        (
            make_deployment(3, 2, 1),
            [
                make_pod("chat-1", ready=True, revision="rev-old"),
                make_pod("chat-2", ready=True, revision="rev-old"),
                make_pod("chat-4"),
            ],
            2,
            "Progressing",
            ("True", "AllReplicasReady"),
            ("True", "ReplicasUpdating"),
            ("False", "NoFailures"),
        ),
        (
            make_deployment(2, 1, 2),
            [make_pod("chat-1", ready=True), CRASHING],
            2,
            "Degraded",
            ("False", "CrashLoopBackOff"),
            ("True", "ReplicasUpdating"),
            ("True", "CrashLoopBackOff"),
        ),
        (
            make_deployment(
                1,
                0,
                1,
                conditions=[
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "too slow",
                    }
                ],
            ),
            [make_pod("chat-1")],
            1,
            "Degraded",
            ("False", "ReplicasNotReady"),
            ("False", "ProgressDeadlineExceeded"),
            ("True", "ProgressDeadlineExceeded"),
        ),
        (
            make_deployment(0, 0, 0),
            [],
            0,
            "Ready",
            ("True", "ScaledToZero"),
            ("False", "RolloutComplete"),
            ("False", "NoFailures"),
        ),
    ],
)
def test_phase_and_conditions(
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    desired: int,
    phase: str,
    ready: tuple[str, str],
    progressing: tuple[str, str],
    degraded: tuple[str, str],
) -> None:
    status = derive_status(make_inputs(deployment, pods, desired))
    assert status["phase"] == phase
    conditions = conditions_of(status)
    assert conditions["Ready"] == ready
    assert conditions["Progressing"] == progressing
    assert conditions["Degraded"] == degraded
    assert conditions["Accepted"] == ("True", "Applied")


def test_scheduler_message_reaches_the_ready_condition() -> None:
    status = derive_status(make_inputs(make_deployment(2, 0, 2), [UNSCHEDULABLE]))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert ready["message"].startswith("0/2 replicas ready")


def test_crash_loop_message_names_pod_container_and_exit() -> None:
    problem = pod_problem(CRASHING)
    assert problem is not None
    assert problem.message == (
        "pod chat-3 container runtime: back-off 5m0s restarting failed container; "
        "last exit code 137 (OOMKilled)"
    )


@pytest.mark.parametrize(
    ("pod", "reason"),
    [
        (make_pod("p", phase="Failed", reason="Evicted", message="node low on memory"), "Evicted"),
        (
            make_pod(
                "p",
                phase="Pending",
                initContainerStatuses=[
                    {"name": "fetch-model", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            ),
            "CrashLoopBackOff",
        ),
        (
            make_pod(
                "p",
                phase="Pending",
                containerStatuses=[
                    {
                        "name": "runtime",
                        "state": {
                            "waiting": {
                                "reason": "CreateContainerConfigError",
                                "message": 'secret "k" not found',
                            }
                        },
                    }
                ],
            ),
            "CreateContainerConfigError",
        ),
        (
            make_pod(
                "p",
                phase="Pending",
                containerStatuses=[
                    {"name": "runtime", "state": {"waiting": {"reason": "ContainerCreating"}}}
                ],
            ),
            None,
        ),
        (
            {
                **make_pod("p", phase="Failed"),
                "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            },
            None,
        ),
    ],
)
def test_pod_problem_reasons(pod: dict[str, Any], reason: str | None) -> None:
    problem = pod_problem(pod)
    assert (problem.reason if problem else None) == reason


def test_rejected_spec_fails_with_its_reason() -> None:
    verdict = SpecVerdict(False, "SecretNotFound", 'secret "hf-token" not found in namespace ml')
    status = derive_status(make_inputs(None, [], verdict=verdict))
    assert status["phase"] == "Failed"
    assert conditions_of(status)["Accepted"] == ("False", "SecretNotFound")
    assert conditions_of(status)["Ready"] == ("False", "SecretNotFound")


def test_status_fields_for_scaling_and_printing() -> None:
    status = derive_status(
        make_inputs(make_deployment(2, 1, 2), [make_pod("chat-1", ready=True), make_pod("chat-2")])
    )
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 1
    assert status["desiredReplicas"] == 2
    assert status["ready"] == "1/2"
    assert status["selector"] == "app.kubernetes.io/instance=chat,app.kubernetes.io/name=berth-runtime"
    assert status["endpoint"] == "http://chat.ml.svc:8000"
    assert status["observedGeneration"] == 3
    assert status["revision"] == {"current": TARGET, "target": TARGET}


def test_current_revision_is_what_most_ready_pods_run() -> None:
    pods = [
        make_pod("a", ready=True, revision="rev-old"),
        make_pod("b", ready=True, revision="rev-old"),
        make_pod("c", ready=True),
    ]
    assert derive_status(make_inputs(make_deployment(3, 3, 1), pods))["revision"]["current"] == "rev-old"


def test_unchanged_observation_derives_identical_status_and_keeps_transition_times() -> None:
    inputs = make_inputs(
        make_deployment(2, 2, 2), [make_pod("chat-1", ready=True), make_pod("chat-2", ready=True)]
    )
    first = derive_status(inputs)
    later = StatusInputs(
        **{
            **inputs.__dict__,
            "previous": InferenceDeploymentStatus.model_validate(first),
            "now": NOW + timedelta(hours=1),
        }
    )
    assert derive_status(later) == first
    assert transition_events(later.previous, first) == []


def test_transition_time_moves_only_when_status_flips() -> None:
    ready_status = derive_status(
        make_inputs(make_deployment(2, 2, 2), [make_pod("a", ready=True), make_pod("b", ready=True)])
    )
    later_inputs = make_inputs(
        make_deployment(2, 1, 2), [make_pod("a", ready=True), make_pod("b")], previous=ready_status
    )
    later = StatusInputs(**{**later_inputs.__dict__, "now": NOW + timedelta(minutes=5)})
    after = {c["type"]: c for c in derive_status(later)["conditions"]}
    assert after["Ready"]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert after["Degraded"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_events_mark_meaningful_transitions() -> None:
    pending = derive_status(make_inputs(make_deployment(2, 0, 2), [UNSCHEDULABLE]))
    events = transition_events(InferenceDeploymentStatus(), pending)
    assert [(e.type, e.reason) for e in events] == [("Warning", "Unschedulable")]
    ready = derive_status(
        make_inputs(
            make_deployment(2, 2, 2), [make_pod("a", ready=True), make_pod("b", ready=True)], previous=pending
        )
    )
    events = transition_events(InferenceDeploymentStatus.model_validate(pending), ready)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready"), ("Normal", "RolloutComplete")]
    crashing = derive_status(
        make_inputs(make_deployment(2, 1, 2), [make_pod("a", ready=True), CRASHING], previous=ready)
    )
    events = transition_events(InferenceDeploymentStatus.model_validate(ready), crashing)
    assert ("Warning", "CrashLoopBackOff") in [(e.type, e.reason) for e in events]
    assert ("Warning", "NotReady") in [(e.type, e.reason) for e in events]


def test_owned_status_ignores_other_writers() -> None:
    full = {
        "phase": "Ready",
        "autoscaling": {"lastEvaluationTime": "2026-01-01T00:00:00Z"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AllReplicasReady"},
            {"type": "SLOMet", "status": "True", "reason": "WithinTargets"},
        ],
    }
    assert owned_status(full) == {
        "phase": "Ready",
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllReplicasReady"}],
    }


def test_a_refused_spec_is_announced_once() -> None:
    verdict = SpecVerdict(
        False, "SecretNotFound", "spec.model.credentialsSecretRef: Secret 'hf-token' not found"
    )
    status = derive_status(make_inputs(None, [], verdict=verdict))
    events = transition_events(InferenceDeploymentStatus(), status)
    assert [(e.type, e.reason) for e in events] == [("Warning", "SecretNotFound")]


def test_recovery_from_a_refused_spec_is_told_by_ready_not_recovered() -> None:
    refused = derive_status(make_inputs(None, [], verdict=SpecVerdict(False, "SecretNotFound", "missing")))
    ready = derive_status(
        make_inputs(
            make_deployment(2, 2, 2), [make_pod("a", ready=True), make_pod("b", ready=True)], previous=refused
        )
    )
    events = transition_events(InferenceDeploymentStatus.model_validate(refused), ready)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready"), ("Normal", "RolloutComplete")]
