"""Applies child objects only when they changed: compare first, then server-side apply.

A child is rewritten when it is missing, when its berth.dev/applied-hash annotation differs from the
desired manifest's (the builders stamp it), when someone else changed a field berth applied (see
ownership.py), or -- for a Deployment -- when its replica count was changed behind the operator's back.
Otherwise nothing is sent: an unchanged reconcile makes no writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from berth_operator.builders.labels import APPLIED_HASH_ANNOTATION
from berth_operator.kube.api import KubeApi
from berth_operator.kube.kinds import kind_of
from berth_operator.kube.ownership import FieldOwnership

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ApplyResult:
    kind: str
    name: str
    outcome: Outcome


def _applied_hash(manifest: dict[str, Any]) -> str | None:
    value = manifest.get("metadata", {}).get("annotations", {}).get(APPLIED_HASH_ANNOTATION)
    return str(value) if value is not None else None


def is_up_to_date(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    """Whether the live object already carries everything the desired manifest says."""
    if _applied_hash(live) != _applied_hash(desired):
        return False
    if desired["kind"] == "Deployment":
        return bool(live.get("spec", {}).get("replicas") == desired["spec"]["replicas"])
    return True


async def apply_child(api: KubeApi, desired: dict[str, Any], ownership: FieldOwnership) -> ApplyResult:
    """Create or update one child if it differs from the desired manifest or was edited by others."""
    metadata = desired["metadata"]
    live = await api.get(kind_of(desired), metadata["namespace"], metadata["name"])
    if live is not None and is_up_to_date(desired, live) and not ownership.drifted(live):
        ownership.remember(live)
        return ApplyResult(desired["kind"], metadata["name"], "unchanged")
    ownership.remember(await api.apply(desired))
    return ApplyResult(desired["kind"], metadata["name"], "created" if live is None else "updated")
