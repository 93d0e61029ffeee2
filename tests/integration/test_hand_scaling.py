"""One rule for replicas, on a real control plane: the InferenceDeployment is the one place they are
set. `kubectl scale deployment` is set back within seconds -- with autoscaling off and on alike, as
an HPA does to a Deployment it manages -- and a Normal Event says what was reverted and how to scale
instead; with autoscaling on, later evaluations do not adopt the hand-set count either.

Why: before, the autoscaler adopted a hand edit while the operator's repair reverted it, and which
one a user saw depended on a race.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.conftest import H100
from tests.integration.idep_reads import idep_status, wait_idep_ready
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for

pytestmark = pytest.mark.integration

NAME = "handscaled"
REVERT_SECONDS = 30.0
EVALUATION_TIMEOUT = 60.0
# Nothing listens there: the autoscaler holds (MetricsUnavailable) and never moves the count itself.
NO_PROMETHEUS = "http://127.0.0.1:9"
AUTOSCALING = {
    "enabled": True,
    "minReplicas": 2,
    "maxReplicas": 4,
    "slo": {"timeToFirstTokenP95Milliseconds": 500},
    "intervalSeconds": 5,
    "prometheus": {"url": NO_PROMETHEUS},
}


def _idep(autoscaling: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": NAME, "source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "revision": "main"},
        "resources": {"gpu": {"count": 1, "product": H100}},
        "replicas": 2,
    }
    if autoscaling:
        spec["autoscaling"] = AUTOSCALING
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": NAME},
        "spec": spec,
    }


def _deployment_replicas(cluster: ClusterAccess, namespace: str) -> int:
    return int(cluster.get("deployment", NAME, namespace=namespace)["spec"]["replicas"])


def _reverted_events(cluster: ClusterAccess, namespace: str) -> list[dict[str, Any]]:
    return [
        event
        for event in cluster.get("events", namespace=namespace)
        if event["involvedObject"].get("kind") == "InferenceDeployment"
        and event["reason"] == "ReplicasReverted"
    ]


def _last_evaluation(cluster: ClusterAccess, namespace: str) -> str | None:
    return (idep_status(cluster, namespace, NAME).get("autoscaling") or {}).get("lastEvaluationTime")


@pytest.mark.parametrize("autoscaling", [False, True], ids=["autoscaling-off", "autoscaling-on"])
def test_a_hand_scaled_deployment_returns_to_the_resources_count_with_an_event(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, autoscaling: bool
) -> None:
    crds.apply(_idep(autoscaling), namespace=namespace)
    wait_idep_ready(crds, namespace, NAME, replicas=2)
    if autoscaling:
        wait_for(lambda: _last_evaluation(crds, namespace), EVALUATION_TIMEOUT, "a first evaluation")

    crds.kubectl("scale", "deployment", NAME, "--replicas=4", namespace=namespace)
    scaled_at = time.monotonic()
    wait_for(
        lambda: _deployment_replicas(crds, namespace) == 2, REVERT_SECONDS, "the Deployment set back to 2"
    )
    print(f"set back to 2 in {time.monotonic() - scaled_at:.1f} s")

    [event] = wait_for(lambda: _reverted_events(crds, namespace), REVERT_SECONDS, "a ReplicasReverted Event")
    assert event["type"] == "Normal"
    message = event["message"]
    assert f"Deployment {NAME} was scaled to 4 replicas outside berth and is set back to 2" in message
    if autoscaling:
        assert "the autoscaler sets it within [2, 4]" in message
    else:
        assert f"kubectl scale inferencedeployment {NAME} --replicas=N" in message

    if autoscaling:  # the next evaluations decide from the resource's count, never the hand-set one
        seen = _last_evaluation(crds, namespace)
        wait_for(lambda: _last_evaluation(crds, namespace) != seen, EVALUATION_TIMEOUT, "a later evaluation")
        history = (idep_status(crds, namespace, NAME).get("autoscaling") or {}).get("history") or []
        assert not any(decision.get("to") == 4 for decision in history), history
    status = wait_idep_ready(crds, namespace, NAME, replicas=2)
    assert status["desiredReplicas"] == 2
    assert _deployment_replicas(crds, namespace) == 2
    assert len(_reverted_events(crds, namespace)) == 1
