"""Applies child objects only when they are berth's own and changed: check, compare, then apply.

Ownership comes first. berth writes a child only when no object of that name exists yet, or when the
existing one carries this InferenceDeployment's controller owner reference (same uid). Anything else
-- the API server's own `kubernetes` Service, a user's ConfigMap that happens to be called
`<name>-runtime`, a child left over from an earlier resource of the same name -- is a `ChildConflict`:
reported, never adopted or overwritten (a forced apply would take its fields, and the owner reference
berth adds would let garbage collection delete it with the resource). `check_children` reads every
child before any is written, so a conflict on the last one leaves the first ones untouched too.

Then the comparison: a child is rewritten when it is missing, when its berth.dev/applied-hash
annotation differs from the desired manifest's (the builders stamp it), when someone else changed a
field berth applied (see ownership.py), or -- for a Deployment -- when its replica count was changed
behind the operator's back. Otherwise nothing is sent: an unchanged reconcile makes no writes.

The replica count is the InferenceDeployment's, like every other field berth applies: a Deployment
scaled by hand (`kubectl scale deployment`, an edit, another autoscaler) is set back to it, as an
HPA does to a Deployment it manages, and the result says which count it replaced so that the
caller can tell people how to scale instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from berth_operator.builders.labels import applied_hash
from berth_operator.kube.api import KubeApi
from berth_operator.kube.kinds import kind_of
from berth_operator.kube.ownership import FieldOwnership

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ApplyResult:
    kind: str
    name: str
    outcome: Outcome
    replaced_replicas: int | None = None
    """For a Deployment someone else had scaled: the count berth found there and set back to its
    own; None otherwise."""


class ChildConflict(Exception):
    """An object that berth did not create for this resource holds a child's name."""

    def __init__(self, kind: str, namespace: str, name: str, why: str) -> None:
        super().__init__(
            f"{kind} {namespace}/{name} already exists and {why}; berth never adopts or overwrites an "
            "object it did not create for this InferenceDeployment: rename or delete that object, or "
            "give the InferenceDeployment another name"
        )
        self.kind, self.namespace, self.name = kind, namespace, name


@dataclass(frozen=True)
class ObservedChild:
    """A desired child manifest and the live object of its name (None when there is none yet)."""

    desired: dict[str, Any]
    live: dict[str, Any] | None


def _controller(obj: dict[str, Any]) -> dict[str, Any] | None:
    for reference in obj.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return dict(reference)
    return None


def foreign_reason(desired: dict[str, Any], live: dict[str, Any]) -> str | None:
    """Why `live` is not the child berth created for the desired manifest's owner; None when it is.

    The test is the controller owner reference: same kind, name and uid as the owner the desired
    manifest names. Labels are not proof (anyone can write them), and an object owned by an earlier
    resource of the same name (another uid) is not this resource's either.
    """
    owner = _controller(desired)
    if owner is None:
        raise ValueError(f"desired {desired['kind']} {desired['metadata']['name']} names no controller")
    found = _controller(live)
    if found is None:
        return "has no controller owner reference (berth did not create it)"
    if (found.get("apiVersion"), found.get("kind"), found.get("name")) != (
        owner["apiVersion"],
        owner["kind"],
        owner["name"],
    ):
        return f"is controlled by {found.get('kind')} {found.get('name')!r}"
    if found.get("uid") != owner["uid"]:
        return (
            f"belongs to an earlier {owner['kind']} {owner['name']!r} (uid {found.get('uid')}); "
            "it goes once garbage collection removes it"
        )
    return None


async def check_children(api: KubeApi, desired: list[dict[str, Any]]) -> list[ObservedChild]:
    """Reads the live object of every desired child; raises ChildConflict for the first not ours."""
    observed = []
    for manifest in desired:
        metadata = manifest["metadata"]
        live = await api.get(kind_of(manifest), metadata["namespace"], metadata["name"])
        if live is not None:
            why = foreign_reason(manifest, live)
            if why is not None:
                raise ChildConflict(manifest["kind"], metadata["namespace"], metadata["name"], why)
        observed.append(ObservedChild(manifest, live))
    return observed


def replicas_set_by_others(desired: dict[str, Any], live: dict[str, Any]) -> int | None:
    """The replica count of a live Deployment that someone other than berth set; None when there is
    none (another kind, the count berth applied, or berth itself changing the count).

    berth's own last apply is the live applied-hash, which covers the replicas berth wrote: with the
    hash unchanged, a different count is someone else's (the API server defaults a missing one to 1).
    """
    if desired["kind"] != "Deployment" or applied_hash(live) != applied_hash(desired):
        return None
    replicas = live.get("spec", {}).get("replicas", 1)
    return None if replicas == desired["spec"]["replicas"] else int(replicas)


def is_up_to_date(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    """Whether the live object already carries everything the desired manifest says."""
    return applied_hash(live) == applied_hash(desired) and replicas_set_by_others(desired, live) is None


async def apply_checked(api: KubeApi, child: ObservedChild, ownership: FieldOwnership) -> ApplyResult:
    """Create or update one checked child if it differs from the desired manifest or was edited by
    others."""
    desired, live = child.desired, child.live
    name = desired["metadata"]["name"]
    if live is not None and is_up_to_date(desired, live) and not ownership.drifted(live):
        ownership.remember(live)
        return ApplyResult(desired["kind"], name, "unchanged")
    replaced = replicas_set_by_others(desired, live) if live is not None else None
    ownership.remember(await api.apply(desired))
    return ApplyResult(desired["kind"], name, "created" if live is None else "updated", replaced)


async def apply_child(api: KubeApi, desired: dict[str, Any], ownership: FieldOwnership) -> ApplyResult:
    """Check one child's ownership, then create or update it if needed."""
    [child] = await check_children(api, [desired])
    return await apply_checked(api, child, ownership)
