"""The API-server operations the operator needs, as a Protocol.

Two implementations: `transport.ClientKubeApi` talks to a real API server; `memory.InMemoryKubeApi`
is the test double handler tests use. Everything above this layer depends only on the Protocol.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from berth_operator.kube.kinds import ResourceKind

FIELD_MANAGER: Final = "berth-operator"


class KubeApi(Protocol):
    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""

    async def list(
        self, kind: ResourceKind, namespace: str, label_selector: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects in the namespace matching the label selector (and the field selector, if given:
        equality terms such as `involvedObject.name=x`, the only kind the operator uses)."""

    async def apply(
        self, manifest: dict[str, Any], *, subresource: str | None = None, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply (force=true) of the manifest, or of one subresource of it (`status`)."""

    async def create(self, kind: ResourceKind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object (used for Events, which are never applied)."""

    async def delete(self, kind: ResourceKind, namespace: str, name: str) -> None:
        """Delete an object; one already gone is not an error. Only for a child the spec no longer asks
        for (the HTTPRoute and its Services): the others go with their owner (garbage collection)."""

    async def merge_patch(
        self, kind: ResourceKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386: null removes a key) of fields berth does not own by apply --
        a one-shot request annotation a person set, removed once carried out."""
