"""Status tells what serves and why not: ready counts are the Service's ready endpoints (a lost node's
pods drop out at once), pods the API server refuses and volumes the kubelet cannot mount make the
resource Degraded with the cause, and each of these announces itself in an Event."""

from __future__ import annotations

from typing import Any

import pytest
from status_factories import (
    TARGET,
    conditions_of,
    make_deployment,
    make_endpoint_slice,
    make_inputs,
    make_pod,
)

from berth_operator.api import InferenceDeploymentStatus
from berth_operator.builders.status import derive_status, transition_events

THREE_READY = [make_pod("chat-1", ready=True), make_pod("chat-2", ready=True), make_pod("chat-3", ready=True)]


@pytest.mark.parametrize(
    ("routed", "ready_replicas", "ready_text", "ready_condition", "phase"),
    [
        pytest.param(THREE_READY, 3, "3/3", ("True", "AllReplicasReady"), "Ready", id="all-routed"),
        pytest.param(THREE_READY[:2], 2, "2/3", ("False", "NotServing"), "Progressing", id="node-lost"),
        pytest.param([], 0, "0/3", ("False", "NotServing"), "Progressing", id="no-endpoints-yet"),
    ],
)
def test_ready_counts_are_what_the_service_routes_to_not_the_deployment(
    routed: list[dict[str, Any]],
    ready_replicas: int,
    ready_text: str,
    ready_condition: tuple[str, str],
    phase: str,
) -> None:
    # The Deployment (and every pod) still says 3 ready: a lost node's pods do until they are deleted.
    inputs = make_inputs(
        make_deployment(3, 3, 3), THREE_READY, desired=3, endpoint_slices=[make_endpoint_slice(*routed)]
    )
    status = derive_status(inputs)
    assert (status["readyReplicas"], status["ready"]) == (ready_replicas, ready_text)
    assert conditions_of(status)["Ready"] == ready_condition
    assert status["phase"] == phase


def test_a_pod_the_service_does_not_route_to_is_named_in_the_ready_condition() -> None:
    status = derive_status(
        make_inputs(
            make_deployment(3, 3, 3),
            THREE_READY,
            desired=3,
            endpoint_slices=[make_endpoint_slice(*THREE_READY[:2])],
        )
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == (
        "2/3 replicas ready; pod chat-3 reports Ready but is not a ready endpoint of Service chat"
        " (is its node gone?)"
    )
    previous = InferenceDeploymentStatus.model_validate(
        derive_status(make_inputs(make_deployment(3, 3, 3), THREE_READY, desired=3))
    )
    assert [(e.type, e.reason, e.message) for e in transition_events(previous, status)] == [
        ("Warning", "NotReady", ready["message"])
    ]


def test_current_revision_is_what_the_serving_pods_run() -> None:
    pods = [
        make_pod("a", ready=True, revision="rev-old"),
        make_pod("b", ready=True, revision="rev-old"),
        make_pod("c", ready=True),
    ]
    status = derive_status(
        make_inputs(make_deployment(3, 3, 1), pods, endpoint_slices=[make_endpoint_slice(pods[2])])
    )
    assert status["revision"]["current"] == TARGET


FORBIDDEN = (
    'pods "chat-7d9f8-" is forbidden: error looking up service account ml/missing: '
    'serviceaccount "missing" not found'
)
REPLICA_FAILURE = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": FORBIDDEN}


@pytest.mark.parametrize(
    ("deployment", "pods", "ready"),
    [
        pytest.param(
            make_deployment(0, 0, 0, conditions=[REPLICA_FAILURE]), [], ("False", "FailedCreate"), id="no-pod"
        ),
        pytest.param(
            make_deployment(2, 2, 0, conditions=[REPLICA_FAILURE]),
            [make_pod("a", ready=True, revision="rev-old"), make_pod("b", ready=True, revision="rev-old")],
            ("True", "AllReplicasReady"),
            id="rollout-blocked-old-pods-serve",
        ),
    ],
)
def test_pods_the_api_server_refuses_make_the_resource_degraded_with_its_message(
    deployment: dict[str, Any], pods: list[dict[str, Any]], ready: tuple[str, str]
) -> None:
    status = derive_status(make_inputs(deployment, pods))
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "FailedCreate",
        FORBIDDEN,
    )
    assert conditions_of(status)["Ready"] == ready
    assert status["phase"] == "Degraded"
    events = transition_events(InferenceDeploymentStatus(), status)
    assert ("Warning", "FailedCreate", FORBIDDEN) in [(e.type, e.reason, e.message) for e in events]


def test_a_refused_pod_is_the_first_reason_the_replicas_are_not_ready() -> None:
    status = derive_status(make_inputs(make_deployment(0, 0, 0, conditions=[REPLICA_FAILURE]), [], desired=1))
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == f"0/1 replicas ready; {FORBIDDEN}"


def test_a_cleared_replica_failure_leaves_no_trace() -> None:
    cleared = {**REPLICA_FAILURE, "status": "False"}
    status = derive_status(make_inputs(make_deployment(0, 0, 0, conditions=[cleared]), [], desired=1))
    assert conditions_of(status)["Degraded"] == ("False", "NoFailures")


def test_a_volume_the_kubelet_cannot_mount_makes_the_resource_degraded() -> None:
    waiting = make_pod(
        "chat-1",
        phase="Pending",
        containerStatuses=[{"name": "runtime", "state": {"waiting": {"reason": "ContainerCreating"}}}],
    )
    event = {
        "type": "Warning",
        "reason": "FailedMount",
        "message": 'MountVolume.SetUp failed for volume "api-key" : secret "chat-key" not found',
        "involvedObject": {"kind": "Pod", "name": "chat-1"},
        "lastTimestamp": "2026-01-01T12:00:00Z",
    }
    merely_starting = derive_status(make_inputs(make_deployment(1, 0, 1), [waiting], desired=1))
    assert conditions_of(merely_starting)["Degraded"] == ("False", "NoFailures")

    status = derive_status(make_inputs(make_deployment(1, 0, 1), [waiting], desired=1, pod_events=[event]))
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "FailedMount")
    assert degraded["message"] == f"pod chat-1: {event['message']}"
    assert conditions_of(status)["Ready"] == ("False", "FailedMount")
    assert status["phase"] == "Degraded"
