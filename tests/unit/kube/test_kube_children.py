"""berth writes a child only when the name is free or the object is its own: an object it did not
create for this resource is reported (ChildConflict) before anything at all is written."""

from __future__ import annotations

from typing import Any

import pytest

from berth_operator.builders.children import stamp_applied_hash
from berth_operator.kube import FieldOwnership, InMemoryKubeApi
from berth_operator.kube.children import ChildConflict, apply_checked, check_children, foreign_reason
from berth_operator.kube.kinds import CONFIG_MAP, SERVICE

OWNER = {
    "apiVersion": "berth.dev/v1alpha1",
    "kind": "InferenceDeployment",
    "name": "chat",
    "uid": "uid-chat",
    "controller": True,
    "blockOwnerDeletion": True,
}


def _object(kind: str, name: str, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "ml",
        "labels": {"app.kubernetes.io/managed-by": "berth"},
    }
    if owners is not None:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata, "data": {"a": "1"}}


@pytest.mark.parametrize(
    ("live_owners", "expected"),
    [
        ([OWNER], None),
        ([{**OWNER, "controller": False}, {**OWNER, "uid": "uid-chat"}], None),
        (None, "has no controller owner reference"),
        ([], "has no controller owner reference"),
        ([{**OWNER, "controller": False}], "has no controller owner reference"),
        ([{**OWNER, "uid": "uid-old"}], "belongs to an earlier InferenceDeployment 'chat' (uid uid-old)"),
        ([{**OWNER, "name": "other"}], "is controlled by InferenceDeployment 'other'"),
        (
            [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "chat", "uid": "u", "controller": True}],
            "is controlled by ReplicaSet 'chat'",
        ),
    ],
)
def test_only_the_controller_reference_to_this_very_resource_makes_a_child_ours(
    live_owners: list[dict[str, Any]] | None, expected: str | None
) -> None:
    desired = _object("ConfigMap", "chat-runtime", [OWNER])
    reason = foreign_reason(desired, _object("ConfigMap", "chat-runtime", live_owners))
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


async def test_a_foreign_object_stops_every_write_and_is_left_byte_identical() -> None:
    api = InMemoryKubeApi()
    users_map = api.put(_object("ConfigMap", "chat-runtime"))  # a user's own, same labels, no owner
    desired = [_object("Service", "chat", [OWNER]), _object("ConfigMap", "chat-runtime", [OWNER])]

    with pytest.raises(ChildConflict) as raised:
        await check_children(api, desired)

    assert "ConfigMap ml/chat-runtime already exists and has no controller owner reference" in str(
        raised.value
    )
    assert "never adopts or overwrites" in str(raised.value)
    assert api.writes == []
    assert api.stored(SERVICE, "ml", "chat") is None  # checked first, so not created either
    assert api.stored(CONFIG_MAP, "ml", "chat-runtime") == users_map


async def test_free_names_and_own_children_are_applied() -> None:
    api = InMemoryKubeApi()
    api.put(_object("ConfigMap", "chat-runtime", [OWNER]))
    desired = [_object("Service", "chat", [OWNER]), _object("ConfigMap", "chat-runtime", [OWNER])]
    desired[1]["data"] = {"a": "2"}

    observed = await check_children(api, [stamp_applied_hash(manifest) for manifest in desired])
    results = [await apply_checked(api, child, FieldOwnership()) for child in observed]

    assert [(result.kind, result.outcome) for result in results] == [
        ("Service", "created"),
        ("ConfigMap", "updated"),
    ]
    stored = api.stored(CONFIG_MAP, "ml", "chat-runtime")
    assert stored is not None and stored["data"] == {"a": "2"}


def _deployment(replicas: int) -> dict[str, Any]:
    return stamp_applied_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "ml", "ownerReferences": [OWNER]},
            "spec": {"replicas": replicas},
        }
    )


@pytest.mark.parametrize(
    ("applied", "desired", "live_replicas", "replaced"),
    [
        (1, 1, 4, 4),  # scaled by hand: set back, and said so
        (1, 3, 1, None),  # berth changing its own count is no revert
        (1, 3, 4, None),  # nor when it changes the count over a hand edit
    ],
)
async def test_a_deployment_scaled_by_hand_is_set_back_and_the_result_says_from_what(
    applied: int, desired: int, live_replicas: int, replaced: int | None
) -> None:
    api = InMemoryKubeApi()
    live = api.put(_deployment(applied))
    live["spec"]["replicas"] = live_replicas  # the hash annotation is berth's, the count someone else's
    api.put(live)
    ownership = FieldOwnership()
    [child] = await check_children(api, [_deployment(desired)])
    result = await apply_checked(api, child, ownership)
    assert result.outcome == "updated"
    assert result.replaced_replicas == replaced
    stored = api.objects[("apps/v1", "Deployment", "ml", "chat")]
    assert stored["spec"]["replicas"] == desired


async def test_a_deployment_at_berths_count_is_left_alone() -> None:
    api = InMemoryKubeApi()
    api.put(_deployment(2))
    [child] = await check_children(api, [_deployment(2)])
    result = await apply_checked(api, child, FieldOwnership())
    assert (result.outcome, result.replaced_replicas) == ("unchanged", None)
    assert api.writes == []
