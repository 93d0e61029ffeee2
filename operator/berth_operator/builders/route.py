"""The Gateway API route (when spec.serving.httpRoute asks for one) and the two per-revision Services
it weights between during a canary.

Without a mesh the Service's endpoints decide the split (a canary's share is its ready replicas out
of all); through a Gateway the split is written as backend weights, so a canary step takes exactly
its share of the desired replicas in traffic once its replicas are ready. Outside a canary the route
sends everything to the resource's Service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from berth_operator.api.serving import GatewayParentReference
from berth_operator.builders.context import BuildContext
from berth_operator.builders.deployment import CANARY_TRACK, TRACK_LABEL
from berth_operator.builders.labels import REVISION_LABEL, common_labels, selector_labels
from berth_operator.builders.service import http_port, service_manifest

GATEWAY_GROUP: Final = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class TrafficSplit:
    """A canary's share of the route's traffic."""

    stable_revision: str
    canary_weight: int
    """Percent of requests to the new revision (0-100); the rest go to the stable one."""


def stable_service_name(owner_name: str) -> str:
    return f"{owner_name}-stable"


def canary_service_name(owner_name: str) -> str:
    return f"{owner_name}-canary"


def route_child_names(owner_name: str) -> tuple[tuple[str, str], ...]:
    """(kind, name) of every object the route brings: what goes when the spec drops the route."""
    return (
        ("HTTPRoute", owner_name),
        ("Service", stable_service_name(owner_name)),
        ("Service", canary_service_name(owner_name)),
    )


def build_revision_services(context: BuildContext, stable_revision: str) -> list[dict[str, Any]]:
    """`NAME-stable` (the stable revision's pods) and `NAME-canary` (the canary Deployment's pods)."""
    owner, ports = context.owner.name, [http_port(context)]
    stable = {**selector_labels(owner), REVISION_LABEL: stable_revision}
    canary = {**selector_labels(owner), TRACK_LABEL: CANARY_TRACK}
    return [
        service_manifest(context, stable_service_name(owner), stable, ports),
        service_manifest(context, canary_service_name(owner), canary, ports),
    ]


def _parent_ref(reference: GatewayParentReference) -> dict[str, Any]:
    return {"group": GATEWAY_GROUP, "kind": "Gateway", **reference.to_wire()}


def build_http_route(context: BuildContext, split: TrafficSplit | None) -> dict[str, Any]:
    """The HTTPRoute: every request to the Service, or split by weight during a canary."""
    route = context.spec.serving.http_route
    if route is None:
        raise ValueError("build_http_route needs spec.serving.httpRoute")
    owner, port = context.owner.name, context.spec.serving.port
    if split is None:
        backends = [{"name": owner, "port": port, "weight": 1}]
    else:
        backends = [
            {"name": stable_service_name(owner), "port": port, "weight": 100 - split.canary_weight},
            {"name": canary_service_name(owner), "port": port, "weight": split.canary_weight},
        ]
    spec: dict[str, Any] = {
        "parentRefs": [_parent_ref(reference) for reference in route.parent_refs],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": owner,
            "namespace": context.owner.namespace,
            "labels": common_labels(owner),
            "ownerReferences": [context.owner.reference()],
        },
        "spec": spec,
    }
