"""Reconciling an InferenceDeployment against an in-memory API server: the children it applies, no
writes when nothing changed, only what changed on a model swap, a hand-scaled Deployment set back, and
repair. Refusals are in test_reconcile_refusals.py, the status sync in test_reconcile_status.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from reconcile_support import AUTOSCALED, InferenceDeploymentFactory, conditions, events, resource_status

from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile, repair
from berth_operator.handlers.status_sync import sync_status
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, INFERENCE_DEPLOYMENT
from berth_operator.kube.memory import Write


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
    status = resource_status(api)
    assert status["phase"] == "Pending"
    assert status["observedGeneration"] == 1
    assert status["endpoint"] == "http://chat.ml.svc:8000"
    assert conditions(api)["Accepted"] == ("True", "Applied")
    assert ("Normal", "Applied") in events(api)
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
    target_before = resource_status(api)["revision"]["target"]
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
    assert resource_status(api)["revision"]["target"] != target_before
    assert resource_status(api)["observedGeneration"] == 2


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
    events_before = len(events(api))
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


async def test_repair_recreates_a_deleted_child_and_tolerates_refusals(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment())
    api.remove(api.stored(DEPLOYMENT, "ml", "chat") or {})
    results = await repair(context, "ml", "chat")
    assert {r.kind: r.outcome for r in results}["Deployment"] == "created"
    assert api.stored(DEPLOYMENT, "ml", "chat") is not None
    assert await repair(context, "ml", "absent") == []

    refused = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}
    refused["spec"]["runtime"] = {"speculative": {"method": "ngram"}}
    api.put(refused)
    assert await repair(context, "ml", "chat") == []
    assert conditions(api)["Accepted"] == ("False", "InvalidSpec")


async def test_reconcile_succeeds_when_events_are_forbidden(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    api.forbidden_kinds.add("Event")
    await reconcile(context, inference_deployment())
    assert resource_status(api)["phase"] == "Pending"
    assert events(api) == []
