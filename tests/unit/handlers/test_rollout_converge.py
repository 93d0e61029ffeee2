"""The rollout through the handler, on the in-memory API: what a canary and a rollback write.

The plan itself is tested pure (tests/unit/rollout); here the glue: the stable revision's template
is kept on the primary (from the live Deployment, or from its ReplicaSet after a failed roll), the
canary Deployment runs the new template on its own track, status.rollout is written under its own
field manager, and the manual action annotation is removed once carried out.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest
from reconcile_support import InferenceDeploymentFactory, events, resource_status

from berth_operator.api.rollout import ROLLOUT_ACTION_ANNOTATION
from berth_operator.builders.deployment import TRACK_LABEL
from berth_operator.builders.labels import REVISION_LABEL
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.errors import NotFound
from berth_operator.kube.kinds import DEPLOYMENT, HTTP_ROUTE, INFERENCE_DEPLOYMENT, SERVICE
from berth_operator.kube.status import ROLLOUT_FIELD_MANAGER

CANARY_SPEC: dict[str, Any] = {
    "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc"},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
    "replicas": 2,
    "rollout": {"strategy": "Canary", "steps": [{"replicas": 1, "pauseSeconds": 30}]},
}


def deployment(api: InMemoryKubeApi, name: str = "chat") -> dict[str, Any]:
    found = api.stored(DEPLOYMENT, "ml", name)
    assert found is not None, name
    return found


def rolled_out(api: InMemoryKubeApi, name: str = "chat") -> None:
    """What the Deployment controller would report once every replica runs the template."""
    live = copy.deepcopy(deployment(api, name))
    replicas = live["spec"]["replicas"]
    live["status"] = {
        "observedGeneration": live["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "readyReplicas": replicas,
    }
    api.put(live)


def ready_pod(api: InMemoryKubeApi, name: str, labels: dict[str, str]) -> None:
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml", "labels": labels},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


def change_spec(api: InMemoryKubeApi, **model: str) -> dict[str, Any]:
    changed = copy.deepcopy(api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    changed["spec"]["model"].update(model)
    changed["metadata"]["generation"] += 1
    return api.put(changed)


async def test_a_canary_keeps_the_stable_template_and_runs_the_new_one_beside_it(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(CANARY_SPEC))
    stable_template = copy.deepcopy(deployment(api)["spec"]["template"])
    stable = deployment(api)["metadata"]["labels"][REVISION_LABEL]
    assert resource_status(api)["rollout"]["phase"] == "Stable"
    rolled_out(api)

    await reconcile(context, change_spec(api, revision="def"))
    rollout = resource_status(api)["rollout"]
    target = resource_status(api)["revision"]["target"]
    assert (rollout["phase"], rollout["stableRevision"], rollout["canaryRevision"]) == (
        "Canary",
        stable,
        target,
    )
    assert rollout["summary"] == "Canary 1/1 Starting"
    primary, canary = deployment(api), deployment(api, "chat-canary")
    assert primary["spec"]["template"] == stable_template  # untouched: the stable revision keeps serving
    assert primary["spec"]["replicas"] == 2  # until the canary replica is ready
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"][TRACK_LABEL] == "canary"
    assert canary["spec"]["template"]["metadata"]["labels"][REVISION_LABEL] == target
    assert ("Normal", "RolloutStarted") in events(api)
    managers = {w.field_manager for w in api.writes if w.subresource == "status"}
    assert ROLLOUT_FIELD_MANAGER in managers

    # The canary replica is ready: the stable side gives one replica up.
    ready_pod(api, "chat-canary-a", {**canary["spec"]["template"]["metadata"]["labels"]})
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    assert deployment(api)["spec"]["replicas"] == 1
    assert deployment(api)["spec"]["template"] == stable_template
    assert resource_status(api)["rollout"]["canaryReadyReplicas"] == 1


async def test_an_abort_annotation_rolls_back_and_is_removed(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(CANARY_SPEC))
    rolled_out(api)
    await reconcile(context, change_spec(api, revision="def"))
    annotated = copy.deepcopy(api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    annotated["metadata"]["annotations"] = {ROLLOUT_ACTION_ANNOTATION: "abort"}
    await reconcile(context, api.put(annotated))
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}
    assert ROLLOUT_ACTION_ANNOTATION not in (stored["metadata"].get("annotations") or {})
    rollout = resource_status(api)["rollout"]
    assert rollout["phase"] == "RolledBack" and rollout["history"][-1]["outcome"] == "Aborted"
    assert deployment(api, "chat-canary")["spec"]["replicas"] == 0  # it never had a ready replica
    assert ("Warning", "Aborted") in events(api)


async def test_an_unknown_action_is_refused_in_an_event_and_removed(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    body = inference_deployment(CANARY_SPEC)
    body["metadata"]["annotations"] = {ROLLOUT_ACTION_ANNOTATION: "yolo"}
    await reconcile(context, api.put(body))
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {}
    assert ROLLOUT_ACTION_ANNOTATION not in (stored["metadata"].get("annotations") or {})
    assert ("Warning", "RolloutActionIgnored") in events(api)


async def test_a_failed_rolling_update_restores_the_stable_template_from_its_replica_set(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    spec = {**CANARY_SPEC, "rollout": {"progressDeadlineSeconds": 60}}
    await reconcile(context, inference_deployment(spec))
    old = deployment(api)
    stable = old["metadata"]["labels"][REVISION_LABEL]
    rolled_out(api)
    # The ReplicaSet the Deployment controller made for the stable revision.
    template = copy.deepcopy(old["spec"]["template"])
    template["metadata"]["labels"]["pod-template-hash"] = "5d8f"
    api.put(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "chat-5d8f",
                "namespace": "ml",
                "labels": template["metadata"]["labels"],
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "ownerReferences": [
                    {"kind": "Deployment", "name": "chat", "uid": "uid-deployment", "controller": True}
                ],
            },
            "spec": {"template": template},
        }
    )
    live = copy.deepcopy(deployment(api))
    live["metadata"]["uid"] = "uid-deployment"
    api.put(live)

    await reconcile(context, change_spec(api, revision="def"))
    assert resource_status(api)["rollout"]["phase"] == "Rolling"
    failing = copy.deepcopy(deployment(api))
    assert failing["metadata"]["labels"][REVISION_LABEL] != stable
    failing["status"] = {
        "observedGeneration": failing["metadata"]["generation"],
        "conditions": [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "timed out",
            }
        ],
    }
    api.put(failing)
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})

    rollout = resource_status(api)["rollout"]
    assert rollout["phase"] == "RolledBack" and rollout["failedRevision"] != stable
    restored = deployment(api)
    assert restored["metadata"]["labels"][REVISION_LABEL] == stable
    assert restored["spec"]["template"] == old["spec"]["template"]  # without pod-template-hash
    assert ("Warning", "RolledBack") in events(api)
    conditions = {c["type"]: c for c in resource_status(api)["conditions"]}
    assert (
        conditions["Progressing"]["status"] == "False" and conditions["Progressing"]["reason"] == "RolledBack"
    )
    assert conditions["Degraded"]["reason"] == "RolledBack"


ROUTED_SPEC: dict[str, Any] = {**CANARY_SPEC, "serving": {"httpRoute": {"parentRefs": [{"name": "public"}]}}}


async def test_a_route_is_weighted_during_a_canary_and_removed_with_the_spec(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await reconcile(context, inference_deployment(ROUTED_SPEC))
    route = api.stored(HTTP_ROUTE, "ml", "chat")
    assert route is not None
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "chat", "port": 8000, "weight": 1}]
    rolled_out(api)
    await reconcile(context, change_spec(api, revision="def"))
    canary = deployment(api, "chat-canary")
    ready_pod(api, "chat-canary-a", {**canary["spec"]["template"]["metadata"]["labels"]})
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})  # the step's replica ready
    await reconcile(context, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})  # the route follows
    backends = (api.stored(HTTP_ROUTE, "ml", "chat") or {})["spec"]["rules"][0]["backendRefs"]
    assert backends == [
        {"name": "chat-stable", "port": 8000, "weight": 50},  # 1 of 2 replicas on the new revision
        {"name": "chat-canary", "port": 8000, "weight": 50},
    ]

    dropped = copy.deepcopy(api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})
    del dropped["spec"]["serving"]
    dropped["metadata"]["generation"] += 1
    await reconcile(context, api.put(dropped))
    assert api.stored(HTTP_ROUTE, "ml", "chat") is None
    assert (
        api.stored(SERVICE, "ml", "chat-stable") is None and api.stored(SERVICE, "ml", "chat-canary") is None
    )
    assert api.stored(SERVICE, "ml", "chat") is not None


class WithoutGatewayApi(InMemoryKubeApi):
    """A cluster that does not serve gateway.networking.k8s.io."""

    async def apply(self, manifest: dict[str, Any], **options: Any) -> dict[str, Any]:
        if manifest["kind"] == "HTTPRoute":
            raise NotFound(404, "NotFound", "the server could not find the requested resource")
        return await super().apply(manifest, **options)


async def test_a_route_without_the_gateway_api_is_refused_naming_the_field(context: OperatorContext) -> None:
    api = WithoutGatewayApi()
    context.api = api
    body = api.put(
        {
            "apiVersion": "berth.dev/v1alpha1",
            "kind": "InferenceDeployment",
            "metadata": {"name": "chat", "namespace": "ml", "uid": "uid-chat", "generation": 1},
            "spec": ROUTED_SPEC,
        }
    )
    with pytest.raises(kopf.TemporaryError):
        await reconcile(context, body)
    accepted = {c["type"]: c for c in resource_status(api)["conditions"]}["Accepted"]
    assert accepted["status"] == "False" and accepted["reason"] == "ApplyFailed"
    assert "spec.serving.httpRoute needs the Gateway API" in accepted["message"]
