"""Status sync reads what tells the truth: the Service's EndpointSlices for ready counts, and a pod's
Warning Events only while that pod waits for its first container -- and the watches that trigger it
(slices, kubelet Warnings) find the InferenceDeployment to sync."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kopf
import pytest

from berth_operator.handlers import registration
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.handlers.status_sync import MAX_PODS_WITH_EVENTS_READ, follow_pod, sync_status
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, EVENT, INFERENCE_DEPLOYMENT, ResourceKind

InferenceDeploymentFactory = Callable[..., dict[str, Any]]
SPEC = {
    "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc"},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
    "replicas": 3,
}
MOUNT_MESSAGE = 'MountVolume.SetUp failed for volume "api-key" : secret "chat-key" not found'


class CountingApi(InMemoryKubeApi):
    """Records every list: (kind, field selector)."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: list[tuple[str, str | None]] = []

    async def list(
        self, kind: ResourceKind, namespace: str, label_selector: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.lists.append((kind.kind, field_selector))
        return await super().list(kind, namespace, label_selector, field_selector)


@pytest.fixture
def api() -> CountingApi:
    return CountingApi()


def _pod(
    name: str, *, ready: bool = True, waiting: str | None = None, instance: str = "chat"
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "runtime", "state": {"running": {}}}
    if waiting is not None:
        container["state"] = {"waiting": {"reason": waiting}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "labels": {
                "app.kubernetes.io/name": "berth-runtime",
                "app.kubernetes.io/instance": instance,
                "app.kubernetes.io/managed-by": "berth",
            },
        },
        "status": {
            "phase": "Running" if waiting is None else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [container],
        },
    }


def _endpoint_slice(*pods: str, managed_by: str = "berth", name: str = "chat-x7k2p") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {
                "kubernetes.io/service-name": "chat",
                "app.kubernetes.io/managed-by": managed_by,
                "app.kubernetes.io/instance": "chat",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "chat"}],
        },
        "endpoints": [
            {"conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": pod, "uid": f"uid-{pod}"}}
            for pod in pods
        ],
    }


def _kubelet_warning(pod: str, reason: str = "FailedMount", message: str = MOUNT_MESSAGE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod}.{reason.lower()}", "namespace": "ml"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ml", "uid": f"uid-{pod}"},
        "type": "Warning",
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet"},
        "lastTimestamp": "2026-01-01T12:00:00Z",
    }


def _deployment_counting_three_ready(api: InMemoryKubeApi) -> None:
    deployment = copy.deepcopy(api.stored(DEPLOYMENT, "ml", "chat") or {})
    deployment["status"] = {
        "observedGeneration": 1,
        "replicas": 3,
        "readyReplicas": 3,
        "updatedReplicas": 3,
        "availableReplicas": 3,
    }
    api.put(deployment)


def _status(api: InMemoryKubeApi) -> dict[str, Any]:
    return dict((api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}).get("status", {}))


def _condition(api: InMemoryKubeApi, condition_type: str) -> dict[str, Any]:
    return next(c for c in _status(api)["conditions"] if c["type"] == condition_type)


async def _reconciled_with_three_ready_pods(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(SPEC))
    for name in ("chat-1", "chat-2", "chat-3"):
        api.put(_pod(name))
    _deployment_counting_three_ready(api)


async def test_ready_counts_come_from_berths_endpoint_slices_not_the_deployment(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await _reconciled_with_three_ready_pods(context, api, inference_deployment)
    api.put(_endpoint_slice("chat-1", "chat-2", "chat-3"))
    await sync_status(context, "ml", "chat")
    assert (_status(api)["readyReplicas"], _status(api)["ready"], _status(api)["phase"]) == (
        3,
        "3/3",
        "Ready",
    )

    api.put(_endpoint_slice("chat-1", "chat-2"))  # the node of chat-3 is gone
    # A same-named Service's slice that is not berth's does not count.
    api.put(_endpoint_slice("chat-1", "chat-2", "chat-3", managed_by="someone", name="chat-foreign"))
    assert await sync_status(context, "ml", "chat") is True
    assert (_status(api)["readyReplicas"], _status(api)["ready"]) == (2, "2/3")
    assert _condition(api, "Ready")["reason"] == "NotServing"
    assert "chat-3" in _condition(api, "Ready")["message"]


async def test_a_healthy_resource_reads_no_events(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await _reconciled_with_three_ready_pods(context, api, inference_deployment)
    api.put(_endpoint_slice("chat-1", "chat-2", "chat-3"))
    api.lists.clear()
    await sync_status(context, "ml", "chat")
    assert [kind for kind, _ in api.lists] == ["Pod", "EndpointSlice"]


async def test_a_pod_that_cannot_mount_a_volume_makes_the_resource_degraded(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await _reconciled_with_three_ready_pods(context, api, inference_deployment)
    api.put(_endpoint_slice("chat-1", "chat-2"))
    api.put(_pod("chat-3", ready=False, waiting="ContainerCreating"))
    api.put(_kubelet_warning("chat-3"))
    api.put(_kubelet_warning("other-pod"))
    api.lists.clear()

    assert await sync_status(context, "ml", "chat") is True

    assert (EVENT.kind, "involvedObject.kind=Pod,involvedObject.name=chat-3,type=Warning") in api.lists
    degraded = _condition(api, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "FailedMount")
    assert degraded["message"] == f"pod chat-3: {MOUNT_MESSAGE}"
    assert _status(api)["phase"] == "Degraded"
    recorded = [obj for (_, kind, _, _), obj in api.objects.items() if kind == "Event"]
    assert ("Warning", "FailedMount") in [
        (event["type"], event["reason"])
        for event in recorded
        if event["involvedObject"]["kind"] == "InferenceDeployment"
    ]


async def test_events_are_read_for_a_bounded_number_of_waiting_pods(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(SPEC))
    for index in range(MAX_PODS_WITH_EVENTS_READ + 3):
        api.put(_pod(f"chat-{index}", ready=False, waiting="ContainerCreating"))
    api.lists.clear()
    await sync_status(context, "ml", "chat")
    assert [kind for kind, _ in api.lists].count(EVENT.kind) == MAX_PODS_WITH_EVENTS_READ


async def test_a_kubelet_warning_syncs_the_status_of_its_pods_inference_deployment(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(SPEC))
    api.put(_pod("chat-6b7c9d-x1y2z", ready=False, waiting="ContainerCreating"))
    api.put(_kubelet_warning("chat-6b7c9d-x1y2z"))
    body = kopf.Body(_kubelet_warning("chat-6b7c9d-x1y2z"))
    assert registration.is_pod_start_failure(body=body, type="ADDED")

    await registration.follow_pod_warnings(body=body, namespace="ml", memo=kopf.Memo(berth=context))

    assert _condition(api, "Degraded")["reason"] == "FailedMount"


@pytest.mark.parametrize(
    ("reason", "event_type", "followed"),
    [
        ("FailedMount", "ADDED", True),
        ("FailedAttachVolume", "MODIFIED", True),
        ("FailedCreatePodSandBox", None, True),
        ("FailedMount", "DELETED", False),
        ("BackOff", "ADDED", False),
    ],
)
def test_only_start_failure_warnings_are_followed(
    reason: str, event_type: str | None, followed: bool
) -> None:
    body = kopf.Body(_kubelet_warning("chat-1", reason=reason))
    assert registration.is_pod_start_failure(body=body, type=event_type) is followed


async def test_a_pod_that_is_not_berths_syncs_nothing(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(SPEC))
    stranger = _pod("web-5d8f7-abcde", instance="web")
    stranger["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "helm"
    api.put(stranger)
    writes_before = len(api.writes)
    await follow_pod(context, "ml", "web-5d8f7-abcde")
    await follow_pod(context, "ml", "gone-5d8f7-abcde")
    assert len(api.writes) == writes_before
    assert [kind for kind, _ in api.lists[-2:]] == ["Pod", "Pod"]


async def test_an_endpoint_slice_event_syncs_the_status_of_its_service_owner(
    context: OperatorContext, api: CountingApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await _reconciled_with_three_ready_pods(context, api, inference_deployment)
    endpoint_slice = api.put(_endpoint_slice("chat-1"))

    await registration.follow_endpoint_slices(
        body=kopf.Body(endpoint_slice), namespace="ml", memo=kopf.Memo(berth=context)
    )

    assert _status(api)["ready"] == "1/3"
