"""Edits behind the operator's back are told apart from berth's own writes by the fields berth owns
under server-side apply, and apply_child re-applies a child someone else changed."""

from __future__ import annotations

import copy
from typing import Any

from berth_operator.builders.labels import APPLIED_HASH_ANNOTATION
from berth_operator.kube import FieldOwnership, InMemoryKubeApi, apply_child
from berth_operator.kube.kinds import SERVICE
from berth_operator.kube.ownership import owned_fields_fingerprint

OWNER = {
    "apiVersion": "berth.dev/v1alpha1",
    "kind": "InferenceDeployment",
    "name": "chat",
    "uid": "uid-chat",
    "controller": True,
}
BERTH_FIELDS = {
    "f:metadata": {"f:annotations": {f"f:{APPLIED_HASH_ANNOTATION}": {}}},
    "f:spec": {"f:ports": {}},
}


def _entry(manager: str, fields: dict[str, Any], operation: str = "Apply", **extra: str) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "fieldsV1": fields, **extra}


def _service(*entries: dict[str, Any], applied_hash: str = "h1", port: int = 8000) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "chat",
            "namespace": "ml",
            "annotations": {APPLIED_HASH_ANNOTATION: applied_hash},
            "ownerReferences": [OWNER],
            "managedFields": list(entries),
        },
        "spec": {"ports": [{"port": port}]},
    }


def _as_berth_left_it(**kwargs: Any) -> dict[str, Any]:
    return _service(_entry("berth-operator", BERTH_FIELDS), **kwargs)


def test_berths_fingerprint_ignores_other_managers_and_its_status_writes() -> None:
    alone = _as_berth_left_it()
    with_others = _service(
        _entry("berth-operator", BERTH_FIELDS),
        _entry("kubectl-edit", {"f:metadata": {"f:labels": {"f:team": {}}}}, operation="Update"),
        _entry("berth-operator", {"f:status": {}}, subresource="status"),
    )
    assert owned_fields_fingerprint(alone) is not None
    assert owned_fields_fingerprint(alone) == owned_fields_fingerprint(with_others)
    assert owned_fields_fingerprint(_service()) is None


def test_a_child_as_berth_left_it_has_not_drifted() -> None:
    ownership = FieldOwnership()
    ownership.remember(_as_berth_left_it())
    assert not ownership.drifted(_as_berth_left_it())


def test_a_field_taken_from_berth_is_drift() -> None:
    ownership = FieldOwnership()
    ownership.remember(_as_berth_left_it())
    # `kubectl edit` changed the port: the field moved from berth's entry to kubectl-edit's.
    edited = _service(
        _entry("berth-operator", {"f:metadata": BERTH_FIELDS["f:metadata"]}),
        _entry("kubectl-edit", {"f:spec": {"f:ports": {}}}, operation="Update"),
        port=9999,
    )
    assert ownership.drifted(edited)


def test_a_field_only_added_by_someone_else_is_no_drift() -> None:
    ownership = FieldOwnership()
    ownership.remember(_as_berth_left_it())
    labelled = _service(
        _entry("berth-operator", BERTH_FIELDS),
        _entry("kubectl-label", {"f:metadata": {"f:labels": {"f:team": {}}}}, operation="Update"),
    )
    assert not ownership.drifted(labelled)


def test_unknown_children_and_a_newer_berth_revision_are_no_drift() -> None:
    ownership = FieldOwnership()
    stripped = _service(_entry("kubectl-edit", {"f:spec": {}}, operation="Update"))
    assert not ownership.drifted(stripped)  # never seen: a restart trusts the first sight
    ownership.remember(_as_berth_left_it(applied_hash="h1"))
    assert not ownership.drifted(_service(applied_hash="h2"))  # berth's own newer apply
    ownership.forget(_as_berth_left_it())
    assert not ownership.drifted(stripped)


async def test_apply_child_rewrites_a_child_someone_else_edited_and_only_that() -> None:
    api = InMemoryKubeApi()
    ownership = FieldOwnership()
    desired = _service()
    del desired["metadata"]["managedFields"]
    api.put(_as_berth_left_it())

    unchanged = await apply_child(api, desired, ownership)
    assert unchanged.outcome == "unchanged"
    assert api.writes == []

    edited = _service(_entry("kubectl-edit", {"f:spec": {"f:ports": {}}}, operation="Update"), port=9999)
    api.put(edited)
    repaired = await apply_child(api, copy.deepcopy(desired), ownership)
    assert repaired.outcome == "updated"
    assert [(write.verb, write.kind) for write in api.writes] == [("apply", "Service")]
    live = api.stored(SERVICE, "ml", "chat")
    assert live is not None
    assert live["spec"]["ports"] == [{"port": 8000}]
