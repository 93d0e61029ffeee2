"""`InMemoryKubeApi`: a KubeApi kept in a dict, the API-server double of handler tests.

It models what the handlers rely on -- objects by kind/namespace/name, label- and field-selector lists,
server-side apply that merges the applied fields into the stored object, generations that move only
when the spec changes, and a log of every write -- and nothing more (no admission, no schema).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from berth_operator.kube.api import FIELD_MANAGER
from berth_operator.kube.errors import Forbidden, Invalid, NotFound
from berth_operator.kube.kinds import ResourceKind, kind_of


@dataclass(frozen=True)
class Write:
    """One recorded write: verb (apply, create), kind, name, subresource and field manager."""

    verb: str
    kind: str
    name: str
    subresource: str | None = None
    field_manager: str | None = None


def _merge(stored: Any, applied: Any) -> Any:
    if isinstance(stored, dict) and isinstance(applied, dict):
        merged = dict(stored)
        for key, value in applied.items():
            merged[key] = _merge(stored.get(key), value)
        return merged
    if isinstance(stored, list) and isinstance(applied, list) and _is_condition_list(stored + applied):
        by_type = {item["type"]: item for item in stored}
        by_type.update({item["type"]: item for item in applied})
        return list(by_type.values())
    return copy.deepcopy(applied)


def _merge_patch(stored: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(stored) if isinstance(stored, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _is_condition_list(items: list[Any]) -> bool:
    # Stands in for the list-map semantics of status.conditions (x-kubernetes-list-map-keys: [type]).
    return bool(items) and all(
        isinstance(item, dict) and "type" in item and "status" in item for item in items
    )


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _matches_fields(stored: dict[str, Any], selector: str | None) -> bool:
    """Equality field selectors (`involvedObject.name=x`), the kind the operator sends."""
    for term in filter(None, (selector or "").split(",")):
        path, _, value = term.partition("=")
        found: Any = stored
        for part in path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if str(found if found is not None else "") != value.removeprefix("="):
            return False
    return True


@dataclass
class InMemoryKubeApi:
    """Objects keyed by (apiVersion, kind, namespace, name); `writes` lists every write in order."""

    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    forbidden_kinds: set[str] = field(default_factory=set)
    refused_applies: dict[str, str] = field(default_factory=dict)
    """kind -> message: applies of that kind are refused as invalid (422), as admission would."""
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def put(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Store an object as another actor would (not recorded as the operator's write)."""
        stored = copy.deepcopy(manifest)
        metadata = stored.setdefault("metadata", {})
        metadata.setdefault("generation", 1)
        metadata.setdefault("uid", f"uid-{metadata['name']}")
        metadata["resourceVersion"] = str(next(self._versions))
        self.objects[self._key(stored)] = stored
        return copy.deepcopy(stored)

    def remove(self, manifest: dict[str, Any]) -> None:
        self.objects.pop(self._key(manifest), None)

    def stored(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind.api_version, kind.kind, namespace, name))

    @staticmethod
    def _key(manifest: dict[str, Any]) -> tuple[str, str, str, str]:
        metadata = manifest["metadata"]
        return (manifest["apiVersion"], manifest["kind"], metadata.get("namespace", ""), metadata["name"])

    def _check_allowed(self, kind: ResourceKind) -> None:
        if kind.kind in self.forbidden_kinds:
            raise Forbidden(403, "Forbidden", f"{kind.plural} is forbidden for the operator")

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        self._check_allowed(kind)
        found = self.stored(kind, namespace, name)
        return copy.deepcopy(found) if found is not None else None

    async def list(
        self, kind: ResourceKind, namespace: str, label_selector: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self._check_allowed(kind)
        return [
            copy.deepcopy(stored)
            for (api_version, kind_name, stored_namespace, _), stored in sorted(self.objects.items())
            if (api_version, kind_name, stored_namespace) == (kind.api_version, kind.kind, namespace)
            and _matches(stored.get("metadata", {}).get("labels", {}), label_selector)
            and _matches_fields(stored, field_selector)
        ]

    async def apply(
        self, manifest: dict[str, Any], *, subresource: str | None = None, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        kind = kind_of(manifest)
        self._check_allowed(kind)
        key = self._key(manifest)
        if kind.kind in self.refused_applies and subresource is None:
            raise Invalid(422, "Invalid", self.refused_applies[kind.kind])
        self.writes.append(Write("apply", kind.kind, key[3], subresource, field_manager))
        existing = self.objects.get(key)
        if subresource == "status":
            if existing is None:
                raise NotFound(404, "NotFound", f"{kind.plural} {key[3]} not found")
            updated = copy.deepcopy(existing)
            updated["status"] = _merge(existing.get("status", {}), manifest.get("status", {}))
        else:
            updated = _merge(existing or {}, manifest)
            if existing is not None and existing.get("spec") != updated.get("spec"):
                updated["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
        return self.put(updated)

    async def delete(self, kind: ResourceKind, namespace: str, name: str) -> None:
        self._check_allowed(kind)
        self.writes.append(Write("delete", kind.kind, name))
        self.objects.pop((kind.api_version, kind.kind, namespace, name), None)

    async def merge_patch(
        self, kind: ResourceKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self._check_allowed(kind)
        existing = self.stored(kind, namespace, name)
        if existing is None:
            raise NotFound(404, "NotFound", f"{kind.plural} {name} not found")
        self.writes.append(Write("patch", kind.kind, name))
        return self.put(_merge_patch(existing, patch))

    async def create(self, kind: ResourceKind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_allowed(kind)
        stored = copy.deepcopy(body)
        metadata = stored.setdefault("metadata", {})
        metadata["namespace"] = namespace
        if "name" not in metadata:
            metadata["name"] = f"{metadata.get('generateName', 'object-')}{len(self.objects)}"
        self.writes.append(Write("create", kind.kind, metadata["name"]))
        return self.put({"apiVersion": kind.api_version, "kind": kind.kind, **stored})
