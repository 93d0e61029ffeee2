"""Which fields of each child berth owns, to notice edits made behind the operator's back.

Why this works without comparing manifests: under server-side apply, a client that changes or removes
a field berth applied -- `kubectl edit`, `kubectl patch`, another applier with --force-conflicts --
takes that field out of berth's managedFields entry. So the set of fields berth owns is the same after
every apply of the same manifest, and differs only after someone else wrote one of berth's fields.
A field someone else merely added, or set to the value berth wants, leaves berth's set alone and is
rightly no drift. Comparing the live object with the desired manifest instead would need the server's
defaults and list-merge keys for every kind, and would rewrite objects whose values the server only
normalised.

The fingerprint of berth's set is remembered per child after each apply (or, for a child already up to
date, when first seen), so a watch event for a child is checked without any API call. After an
operator restart, the first sight is trusted: an edit made while no operator ran is not noticed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from berth_operator.builders.labels import applied_hash
from berth_operator.kube.api import FIELD_MANAGER

ChildKey = tuple[str, str, str]  # kind, namespace, name


def _key(obj: dict[str, Any]) -> ChildKey:
    metadata = obj.get("metadata", {})
    return str(obj.get("kind", "")), str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def owned_fields_fingerprint(live: dict[str, Any]) -> str | None:
    """A digest of the fields berth's server-side apply owns in the object; None when it owns none."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        berths_apply = entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
        if berths_apply and not entry.get("subresource"):
            fields = json.dumps(entry.get("fieldsV1", {}), sort_keys=True, separators=(",", ":"))
            return hashlib.sha256(fields.encode()).hexdigest()
    return None


@dataclass
class FieldOwnership:
    """Per child: the applied-hash and the fingerprint of berth's fields right after berth wrote it."""

    _owned: dict[ChildKey, tuple[str | None, str | None]] = field(default_factory=dict)

    def remember(self, live: dict[str, Any]) -> None:
        """Record the object as berth left it (an apply's response, or a child found up to date)."""
        self._owned[_key(live)] = (applied_hash(live), owned_fields_fingerprint(live))

    def drifted(self, live: dict[str, Any]) -> bool:
        """Whether someone else changed or removed a field berth applied since berth last wrote it.

        False for an unknown child and for one whose applied-hash changed (a newer apply by berth is
        on its way or done, and will be remembered then)."""
        recorded = self._owned.get(_key(live))
        if recorded is None:
            return False
        recorded_hash, fingerprint = recorded
        return applied_hash(live) == recorded_hash and owned_fields_fingerprint(live) != fingerprint

    def forget(self, live: dict[str, Any]) -> None:
        self._owned.pop(_key(live), None)
