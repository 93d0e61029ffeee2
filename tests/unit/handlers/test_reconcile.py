"""Reconciling an InferenceDeployment against an in-memory API server: what gets written, and when not."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kopf
import pytest

from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile, repair
from berth_operator.handlers.status_sync import sync_status
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, INFERENCE_DEPLOYMENT, SECRET, SERVICE
from berth_operator.kube.memory import Write
from berth_operator.settings import OperatorSettings

InferenceDeploymentFactory = Callable[..., dict[str, Any]]


def _status(api: InMemoryKubeApi) -> dict[str, Any]:
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    return stored.get("status", {})  # type: ignore[no-any-return]


def _conditions(api: InMemoryKubeApi) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in _status(api).get("conditions", [])}


def _events(api: InMemoryKubeApi) -> list[tuple[str, str]]:
    return [(obj["type"], obj["reason"]) for (_, kind, _, _), obj in api.objects.items() if kind == "Event"]


async def test_first_reconcile_applies_children_status_and_an_event(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment()
    results = await reconcile(context, body)
    assert [(r.kind, r.outcome) for r in results] == [
        ("ConfigMap", "created"),
        ("Deployment", "created"),
        ("Service", "created"),
        ("PodDisruptionBudget", "created"),
    ]
    assert [w for w in api.writes if w.verb == "apply" and w.subresource is None] == [
        Write("apply", kind, name, None, "berth-operator")
        for kind, name in [
            ("ConfigMap", "chat-runtime"),
            ("Deployment", "chat"),
            ("Service", "chat"),
            ("PodDisruptionBudget", "chat"),
        ]
    ]
    status = _status(api)
    assert status["phase"] == "Pending"
    assert status["observedGeneration"] == 1
    assert status["endpoint"] == "http://chat.ml.svc:8000"
    assert _conditions(api)["Accepted"] == ("True", "Applied")
    assert ("Normal", "Applied") in _events(api)
    deployment = api.stored(DEPLOYMENT, "ml", "chat")
    assert deployment is not None and deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-chat"


async def test_unchanged_resource_makes_no_writes(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    inference_deployment()
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    writes_after_first = len(api.writes)
    results = await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    assert {r.outcome for r in results} == {"unchanged"}
    assert len(api.writes) == writes_after_first
    assert await sync_status(context, "ml", "chat") is False
    assert len(api.writes) == writes_after_first


async def test_model_swap_rewrites_only_what_changed(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment()
    await reconcile(context, body)
    target_before = _status(api)["revision"]["target"]
    changed = copy.deepcopy(api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    changed["spec"]["model"]["revision"] = "def"
    changed["metadata"]["generation"] = 2
    api.put(changed)
    results = await reconcile(context, changed)
    assert {r.kind: r.outcome for r in results} == {
        "ConfigMap": "updated",
        "Deployment": "updated",
        "Service": "unchanged",
        "PodDisruptionBudget": "unchanged",
    }
    assert _status(api)["revision"]["target"] != target_before
    assert _status(api)["observedGeneration"] == 2


async def test_spec_the_schema_missed_is_refused_with_a_condition_not_a_crash(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment(
        {"model": {"name": "m", "source": "hf://org/m"}, "runtime": {"speculative": {"method": "ngram"}}}
    )
    with pytest.raises(kopf.PermanentError, match="numTokens"):
        await reconcile(context, body)
    assert _status(api)["phase"] == "Failed"
    assert _conditions(api)["Accepted"] == ("False", "InvalidSpec")
    assert ("Warning", "InvalidSpec") in _events(api)
    assert api.stored(DEPLOYMENT, "ml", "chat") is None


async def test_a_refused_spec_keeps_the_recorded_replica_count(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    # The Deployment is left as it is while the spec is refused, and so is the count it is driven to:
    # an autoscaling decision recorded in status.desiredReplicas is where a fixed spec resumes from.
    refused = {**AUTOSCALED, "runtime": {"speculative": {"method": "ngram"}}}
    with pytest.raises(kopf.PermanentError, match="numTokens"):
        await reconcile(context, inference_deployment(refused, status={"desiredReplicas": 3}))
    assert _status(api)["desiredReplicas"] == 3
    await reconcile(context, inference_deployment(AUTOSCALED, status=_status(api)))
    assert (api.stored(DEPLOYMENT, "ml", "chat") or {})["spec"]["replicas"] == 3


async def test_gpu_product_outside_the_allow_list_is_refused(
    api: InMemoryKubeApi, context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    context.settings = OperatorSettings(gpu_products=("NVIDIA-A100-SXM4-80GB",))
    with pytest.raises(kopf.PermanentError, match="NVIDIA-H100-80GB-HBM3"):
        await reconcile(context, inference_deployment())
    assert _conditions(api)["Accepted"] == ("False", "UnsupportedGpuProduct")
    message = next(c["message"] for c in _status(api)["conditions"] if c["type"] == "Accepted")
    assert "accepted: NVIDIA-A100-SXM4-80GB" in message


async def test_missing_secret_waits_and_recovers_once_it_exists(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    spec = {
        "model": {"name": "m", "source": "hf://org/m", "credentialsSecretRef": {"name": "hf-token"}},
        "serving": {"apiKeySecretRef": {"name": "chat-key", "key": "token"}},
    }
    body = inference_deployment(spec)
    with pytest.raises(kopf.TemporaryError) as error:
        await reconcile(context, body)
    assert error.value.delay == context.settings.missing_secret_retry_seconds
    assert _conditions(api)["Accepted"] == ("False", "SecretNotFound")
    assert "hf-token" in str(error.value)
    api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "ml"}})
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat-key", "namespace": "ml"},
            "data": {},
        }
    )
    with pytest.raises(kopf.TemporaryError, match="has no key 'token'"):
        await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "chat-key", "namespace": "ml"},
            "data": {"token": "eA=="},
        }
    )
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    assert _conditions(api)["Accepted"] == ("True", "Applied")
    assert _status(api)["phase"] == "Pending"


async def test_without_permission_to_read_secrets_the_check_is_skipped(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    api.forbidden_kinds.add(SECRET.kind)
    spec = {"model": {"name": "m", "source": "s3://bucket/m", "credentialsSecretRef": {"name": "s3"}}}
    await reconcile(context, inference_deployment(spec))
    assert api.stored(DEPLOYMENT, "ml", "chat") is not None


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
    ready = next(c for c in _status(api)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert scheduler_message in ready["message"]
    assert ("Warning", "Unschedulable") in _events(api)
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
    assert _status(api)["phase"] == "Ready"
    assert _status(api)["ready"] == "1/1"
    assert ("Normal", "Ready") in _events(api)


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
    assert _conditions(api)["SLOMet"] == ("True", "WithinTargets")
    assert _status(api)["autoscaling"] == autoscaling
    assert await sync_status(context, "ml", "chat") is False


AUTOSCALED = {
    "model": {"name": "m", "source": "hf://org/m"},
    "replicas": 2,
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 4,
        "slo": {"timeToFirstTokenP95Milliseconds": 500},
    },
}


@pytest.mark.parametrize(
    ("spec", "count", "how"),
    [
        (None, 1, "Scale it instead: kubectl scale inferencedeployment chat --replicas=N"),
        (AUTOSCALED, 2, "With autoscaling on, the autoscaler sets it within [2, 4]"),
    ],
)
async def test_a_hand_scaled_deployment_is_set_back_with_one_event_saying_how_to_scale(
    context: OperatorContext,
    api: InMemoryKubeApi,
    inference_deployment: InferenceDeploymentFactory,
    spec: dict[str, Any] | None,
    count: int,
    how: str,
) -> None:
    await reconcile(context, inference_deployment(spec))
    events_before = len(_events(api))
    deployment = api.stored(DEPLOYMENT, "ml", "chat") or {}
    deployment["spec"]["replicas"] = 5  # kubectl scale deployment chat --replicas=5
    api.put(deployment)
    results = await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    deployment_result = next(r for r in results if r.kind == "Deployment")
    assert (deployment_result.outcome, deployment_result.replaced_replicas) == ("updated", 5)
    assert (api.stored(DEPLOYMENT, "ml", "chat") or {})["spec"]["replicas"] == count
    new_events = [
        (obj["type"], obj["reason"], obj["message"])
        for (_, kind, _, _), obj in api.objects.items()
        if kind == "Event"
    ][events_before:]
    assert [(kind, reason) for kind, reason, _ in new_events] == [("Normal", "ReplicasReverted")]
    message = new_events[0][2]
    assert f"scaled to 5 replicas outside berth and is set back to {count}" in message
    assert how in message


async def test_a_name_that_cannot_name_a_service_is_refused(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment()
    renamed = copy.deepcopy(body)
    renamed["metadata"]["name"] = "chat.v2"
    api.delete(body)
    api.put(renamed)
    with pytest.raises(kopf.PermanentError, match="RFC 1035"):
        await reconcile(context, renamed)
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat.v2") or {}
    assert {c["type"]: c["reason"] for c in stored["status"]["conditions"]}["Accepted"] == "InvalidName"
    assert api.stored(DEPLOYMENT, "ml", "chat.v2") is None


async def test_repair_recreates_a_deleted_child_and_tolerates_refusals(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment())
    api.delete(api.stored(DEPLOYMENT, "ml", "chat") or {})
    results = await repair(context, "ml", "chat")
    assert {r.kind: r.outcome for r in results}["Deployment"] == "created"
    assert api.stored(DEPLOYMENT, "ml", "chat") is not None
    assert await repair(context, "ml", "absent") == []

    refused = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}
    refused["spec"]["runtime"] = {"speculative": {"method": "ngram"}}
    api.put(refused)
    assert await repair(context, "ml", "chat") == []
    assert _conditions(api)["Accepted"] == ("False", "InvalidSpec")


async def test_reconcile_succeeds_when_events_are_forbidden(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    api.forbidden_kinds.add("Event")
    await reconcile(context, inference_deployment())
    assert _status(api)["phase"] == "Pending"
    assert _events(api) == []


async def test_a_child_name_held_by_a_foreign_object_is_reported_and_nothing_is_written(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    theirs = api.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "chat", "namespace": "ml", "labels": {"team": "search"}},
            "spec": {"ports": [{"port": 443}]},
        }
    )
    body = inference_deployment()
    with pytest.raises(kopf.TemporaryError) as first:
        await reconcile(context, body)
    with pytest.raises(kopf.TemporaryError) as third:
        await reconcile(context, body, retry=2)

    assert (first.value.delay, third.value.delay) == (15.0, 60.0)
    assert _conditions(api)["Accepted"] == ("False", "ChildConflict")
    message = next(c["message"] for c in _status(api)["conditions"] if c["type"] == "Accepted")
    assert "Service ml/chat already exists and has no controller owner reference" in message
    assert _status(api)["phase"] == "Failed"
    assert ("Warning", "ChildConflict") in _events(api)
    assert [w.kind for w in api.writes if w.verb == "apply" and w.subresource is None] == []
    assert api.stored(SERVICE, "ml", "chat") == theirs

    api.delete(theirs)  # the object in the way goes: the next retry applies everything
    results = await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}, retry=3)
    assert {r.outcome for r in results} == {"created"}
    assert _conditions(api)["Accepted"] == ("True", "Applied")


async def test_a_child_the_api_server_refuses_is_reported_with_its_message_and_retried(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    refusal = 'Deployment.apps "chat" is invalid: spec.template.spec.priorityClassName: Invalid value: "A B"'
    api.refused_applies["Deployment"] = refusal
    with pytest.raises(kopf.TemporaryError) as error:
        await reconcile(context, inference_deployment(), retry=10)

    assert error.value.delay == 300.0
    assert _conditions(api)["Accepted"] == ("False", "ApplyFailed")
    message = next(c["message"] for c in _status(api)["conditions"] if c["type"] == "Accepted")
    assert message == f"the API server refused Deployment ml/chat: {refusal}"
    assert ("Warning", "ApplyFailed") in _events(api)
