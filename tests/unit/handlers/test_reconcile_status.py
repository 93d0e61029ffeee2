"""The status sync after a reconcile: it follows pods from unschedulable to ready (ready counts are what
the Service routes to), writes nothing before the first reconcile or when nothing changed, and keeps
the autoscaler's conditions and fields."""

from __future__ import annotations

from typing import Any

from reconcile_support import InferenceDeploymentFactory, conditions, events, resource_status

from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.handlers.status_sync import sync_status
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, INFERENCE_DEPLOYMENT


def _endpoint_slice_routing_to(*pods: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "chat-x7k2p",
            "namespace": "ml",
            "labels": {"kubernetes.io/service-name": "chat", "app.kubernetes.io/managed-by": "berth"},
        },
        "endpoints": [
            {"conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": pod}} for pod in pods
        ],
    }


def _pod(name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"app.kubernetes.io/name": "berth-runtime", "app.kubernetes.io/instance": "chat"},
        },
        "status": status,
    }


async def test_status_follows_unschedulable_then_ready_pods(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment())
    scheduler_message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    api.put(
        _pod(
            "chat-1",
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": scheduler_message,
                }
            ],
        )
    )
    assert await sync_status(context, "ml", "chat") is True
    ready = next(c for c in resource_status(api)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert scheduler_message in ready["message"]
    assert ("Warning", "Unschedulable") in events(api)
    assert await sync_status(context, "ml", "chat") is False  # same observation: no write

    api.put(_pod("chat-1", phase="Running", conditions=[{"type": "Ready", "status": "True"}]))
    deployment = api.stored(DEPLOYMENT, "ml", "chat") or {}
    deployment["status"] = {
        "observedGeneration": 1,
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
    }
    api.put(deployment)
    api.put(_endpoint_slice_routing_to("chat-1"))  # ready counts are what the Service routes to
    assert await sync_status(context, "ml", "chat") is True
    assert resource_status(api)["phase"] == "Ready"
    assert resource_status(api)["ready"] == "1/1"
    assert ("Normal", "Ready") in events(api)


async def test_status_sync_before_the_first_reconcile_writes_nothing(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    inference_deployment()
    assert await sync_status(context, "ml", "chat") is False
    assert api.writes == []
    assert await sync_status(context, "ml", "gone") is False


async def test_status_keeps_the_autoscalers_conditions_and_fields(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    slo = {
        "type": "SLOMet",
        "status": "True",
        "reason": "WithinTargets",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    autoscaling = {
        "lastEvaluationTime": "2026-01-01T00:00:00Z",
        "capacity": {"ceilingTokensPerSecond": 900.0},
    }
    inference_deployment(status={"conditions": [slo], "autoscaling": autoscaling})
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    assert conditions(api)["SLOMet"] == ("True", "WithinTargets")
    assert resource_status(api)["autoscaling"] == autoscaling
    assert await sync_status(context, "ml", "chat") is False
