"""Service, ConfigMap, PodDisruptionBudget, the full child set, replicas and the applied-hash stamp."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus
from berth_operator.builders import BuildContext, build_children
from berth_operator.builders.children import stamp_applied_hash
from berth_operator.builders.configmap import build_config_map
from berth_operator.builders.context import Owner
from berth_operator.builders.labels import APPLIED_HASH_ANNOTATION, selector_string
from berth_operator.builders.pdb import build_pod_disruption_budget
from berth_operator.builders.replicas import effective_replicas, replicas_reverted_message
from berth_operator.builders.service import build_service, endpoint_url

ContextFactory = Callable[..., BuildContext]


def test_service_exposes_http_and_metrics_by_name(make_context: ContextFactory) -> None:
    service = build_service(make_context({"serving": {"port": 9000, "metricsPort": 9100}}))
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "berth-runtime",
        "app.kubernetes.io/instance": "chat",
    }
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert endpoint_url(make_context()) == "http://chat.ml.svc:8000"


def test_config_map_records_the_rendered_commands(make_context: ContextFactory) -> None:
    config_map = build_config_map(make_context())
    assert config_map["metadata"]["name"] == "chat-runtime"
    config = json.loads(config_map["data"]["runtime.json"])
    assert config["serveCommand"][:4] == ["python", "-m", "berth_runtime", "serve"]
    assert config["fetchCommand"][3] == "fetch"
    assert config["image"] == "registry.example/berth-runtime:test"


def test_pdb_evicts_one_at_a_time_and_never_blocks_on_unhealthy_pods(make_context: ContextFactory) -> None:
    spec = build_pod_disruption_budget(make_context())["spec"]
    assert spec == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {"app.kubernetes.io/name": "berth-runtime", "app.kubernetes.io/instance": "chat"}
        },
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_children_are_complete_owned_and_stamped(make_context: ContextFactory) -> None:
    children = build_children(make_context())
    assert [child["kind"] for child in children] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    for child in children:
        assert child["metadata"]["ownerReferences"][0]["controller"] is True
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "berth"
        assert len(child["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]) == 16


def test_applied_hash_changes_with_content_only(make_context: ContextFactory) -> None:
    first = {child["kind"]: child for child in build_children(make_context())}
    again = {child["kind"]: child for child in build_children(make_context())}
    scaled = {child["kind"]: child for child in build_children(make_context(replicas=3))}

    def stamp(children: dict[str, Any], kind: str) -> str:
        return str(children[kind]["metadata"]["annotations"][APPLIED_HASH_ANNOTATION])

    assert all(stamp(first, kind) == stamp(again, kind) for kind in first)
    assert stamp(scaled, "Deployment") != stamp(first, "Deployment")
    assert stamp(scaled, "Service") == stamp(first, "Service")
    assert stamp_applied_hash(first["Service"]) == first["Service"]  # re-stamping is idempotent


def test_selector_string_matches_the_selector_labels() -> None:
    assert selector_string("chat") == "app.kubernetes.io/instance=chat,app.kubernetes.io/name=berth-runtime"


def _spec(autoscaling: dict[str, Any], replicas: int = 2, gpus: int = 1) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "source": "hf://org/m"},
            "replicas": replicas,
            "resources": {"gpu": {"count": gpus}},
            "runtime": {"tensorParallelSize": gpus},
            "autoscaling": {"slo": {"timeToFirstTokenP95Milliseconds": 500}, **autoscaling},
        }
    )


def _status(desired: int | None) -> InferenceDeploymentStatus:
    return InferenceDeploymentStatus.model_validate({"desiredReplicas": desired})


@pytest.mark.parametrize(
    ("autoscaling", "replicas", "desired", "expected"),
    [
        ({"enabled": False}, 2, 7, 2),  # manual: spec.replicas, whatever status recorded
        ({"enabled": True, "minReplicas": 1, "maxReplicas": 8}, 2, None, 2),  # no decision yet
        ({"enabled": True, "minReplicas": 1, "maxReplicas": 8}, 2, 5, 5),
        ({"enabled": True, "minReplicas": 1, "maxReplicas": 4}, 2, 9, 4),  # clamped to max
        ({"enabled": True, "minReplicas": 3, "maxReplicas": 4}, 1, None, 3),  # clamped to min
        ({"enabled": True, "minReplicas": 1, "maxReplicas": 8, "dryRun": True}, 2, 6, 2),
        ({"enabled": True, "minReplicas": 1, "maxReplicas": 8, "maxGpus": 3}, 2, 6, 3),
    ],
)
def test_effective_replicas(
    autoscaling: dict[str, Any], replicas: int, desired: int | None, expected: int
) -> None:
    assert effective_replicas(_spec(autoscaling, replicas), _status(desired)) == expected


def test_gpu_budget_bounds_replicas_by_gpus_per_replica() -> None:
    spec = _spec({"enabled": True, "minReplicas": 1, "maxReplicas": 8, "maxGpus": 5}, gpus=2)
    assert spec.replica_bounds() == (1, 2)


@pytest.mark.parametrize(
    ("autoscaling", "how"),
    [
        ({"enabled": False}, "Scale it instead: kubectl scale inferencedeployment chat --replicas=N"),
        (
            {"enabled": True, "maxReplicas": 3},
            "the autoscaler sets it within [1, 3]; change spec.autoscaling.minReplicas, maxReplicas",
        ),
        (
            {"enabled": True, "maxReplicas": 3, "dryRun": True},
            "Scale it instead (within [1, 3] while autoscaling.dryRun is on): kubectl scale",
        ),
    ],
)
def test_a_reverted_hand_scale_says_what_was_reverted_and_how_to_scale(
    autoscaling: dict[str, Any], how: str
) -> None:
    build = BuildContext(Owner("chat", "ml", "uid"), _spec(autoscaling), 2, "image")
    message = replicas_reverted_message(build, 7)
    assert message.startswith(
        "Deployment chat was scaled to 7 replicas outside berth and is set back to 2: "
        "InferenceDeployment chat sets the count."
    )
    assert how in message
