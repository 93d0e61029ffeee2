"""Kopf sees berth's handlers under their stable ids, with berth's persistence settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
import pytest

from berth_operator.handlers import registration
from berth_operator.handlers.context import OperatorContext
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import SERVICE

InferenceDeploymentFactory = Callable[..., dict[str, Any]]


def _ids(registry: Any) -> set[str]:
    return {handler.id for handler in registry.get_all_handlers()}


def test_handlers_are_registered_with_explicit_ids() -> None:
    registry = kopf.get_default_registry()
    assert {"apply-on-create", "apply-on-update/spec", "apply-on-resume", "forget"} <= _ids(
        registry._changing
    )
    assert {
        "follow-deployment",
        "follow-pods",
        "guard-service",
        "guard-configmap",
        "guard-pdb",
        "follow-endpoint-slices",
        "follow-pod-warnings",
    } <= _ids(registry._watching)
    assert "resync" in _ids(registry._spawning)
    # The autoscaler applies its decisions itself: no handler reads them back from status.
    assert "follow-autoscaler" not in _ids(registry._watching)


def test_only_optional_deletion_handlers_so_no_finalizer_blocks_deletion() -> None:
    deletion = [h for h in kopf.get_default_registry()._changing.get_all_handlers() if h.id == "forget"]
    assert [h.requires_finalizer for h in deletion] == [False]


def test_startup_puts_kopf_state_under_berth_dev() -> None:
    settings = kopf.OperatorSettings()
    registration.configure(settings=settings)
    assert settings.persistence.finalizer == "berth.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.watching.server_timeout is not None
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    selectors = {str(selector): value for selector, value in settings.watching.label_selectors.items()}
    # Every child kind is watched with the API server filtering to berth's own objects.
    assert len(selectors) == len(registration.WATCHED_CHILDREN) == 6
    assert set(selectors.values()) == {"app.kubernetes.io/managed-by=berth"}
    # Events carry no labels: the API server filters them by field to Warnings about pods.
    fields = {str(selector): value for selector, value in settings.watching.field_selectors.items()}
    assert list(fields.values()) == ["involvedObject.kind=Pod,type=Warning"]


@pytest.mark.parametrize(
    ("metadata", "owner"),
    [
        (
            {
                "ownerReferences": [
                    {"apiVersion": "berth.dev/v1alpha1", "kind": "InferenceDeployment", "name": "chat"}
                ],
                "labels": {"app.kubernetes.io/instance": "other"},
            },
            "chat",
        ),
        ({"labels": {"app.kubernetes.io/instance": "chat"}}, "chat"),  # pods: owned by a ReplicaSet
        ({"labels": {}}, None),
    ],
)
def test_children_map_back_to_their_inference_deployment(metadata: dict[str, Any], owner: str | None) -> None:
    assert registration.owner_name(kopf.Body({"metadata": metadata})) == owner


async def test_api_errors_become_retries_and_are_counted(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    api.forbidden_kinds.add("Deployment")
    with pytest.raises(kopf.TemporaryError, match="403"):
        await registration.apply_children(body=inference_deployment(), memo=kopf.Memo(berth=context))
    registry = context.metrics.registry
    assert registry.get_sample_value("berth_operator_reconcile_errors_total", {"reason": "api_403"}) == 1
    assert (
        registry.get_sample_value("berth_operator_reconcile_duration_seconds_count", {"handler": "apply"})
        == 1
    )


async def test_successful_reconcile_counts_writes_and_managed_resources(
    context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    await registration.apply_children(body=inference_deployment(), memo=kopf.Memo(berth=context))
    registry = context.metrics.registry
    assert registry.get_sample_value("berth_operator_managed_resources") == 1
    assert (
        registry.get_sample_value("berth_operator_api_writes_total", {"kind": "Deployment", "verb": "apply"})
        == 1
    )
    assert (
        registry.get_sample_value(
            "berth_operator_api_writes_total", {"kind": "InferenceDeployment", "verb": "status"}
        )
        == 2  # the operator's status and the rollout plan's first record
    )
    await registration.forget(name="chat", namespace="ml", memo=kopf.Memo(berth=context))
    assert registry.get_sample_value("berth_operator_managed_resources") == 0


async def test_a_child_deleted_behind_the_operators_back_is_recreated_and_an_untouched_one_is_left(
    context: OperatorContext, api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    await registration.apply_children(body=inference_deployment(), memo=kopf.Memo(berth=context))
    service = api.stored(SERVICE, "ml", "chat")
    assert service is not None
    memo = kopf.Memo(berth=context)

    writes_before = len(api.writes)
    await registration.guard_child(body=kopf.Body(service), type="MODIFIED", namespace="ml", memo=memo)
    assert len(api.writes) == writes_before, "an event for an untouched child must not write"

    api.remove(service)
    await registration.guard_child(body=kopf.Body(service), type="DELETED", namespace="ml", memo=memo)
    assert api.stored(SERVICE, "ml", "chat") is not None
    reapplied = [write.kind for write in api.writes[writes_before:] if write.subresource is None]
    assert reapplied[0] == "Service"
    assert "Deployment" not in reapplied, "only the missing child is written"
