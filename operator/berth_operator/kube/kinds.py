"""The resource kinds the operator touches, and their REST paths."""

from __future__ import annotations

from dataclasses import dataclass

from berth_operator.api import resource as identity


@dataclass(frozen=True)
class ResourceKind:
    """A namespaced resource kind: apiVersion, kind and plural name."""

    api_version: str
    kind: str
    plural: str

    def collection_path(self, namespace: str) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}"

    def object_path(self, namespace: str, name: str, subresource: str | None = None) -> str:
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


INFERENCE_DEPLOYMENT = ResourceKind(identity.API_VERSION, identity.KIND, identity.PLURAL)
DEPLOYMENT = ResourceKind("apps/v1", "Deployment", "deployments")
REPLICA_SET = ResourceKind("apps/v1", "ReplicaSet", "replicasets")
SERVICE = ResourceKind("v1", "Service", "services")
CONFIG_MAP = ResourceKind("v1", "ConfigMap", "configmaps")
POD_DISRUPTION_BUDGET = ResourceKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
POD = ResourceKind("v1", "Pod", "pods")
SECRET = ResourceKind("v1", "Secret", "secrets")
EVENT = ResourceKind("v1", "Event", "events")
ENDPOINT_SLICE = ResourceKind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
HTTP_ROUTE = ResourceKind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")

KINDS_BY_TYPE = {
    (kind.api_version, kind.kind): kind
    for kind in (
        INFERENCE_DEPLOYMENT,
        DEPLOYMENT,
        REPLICA_SET,
        SERVICE,
        CONFIG_MAP,
        POD_DISRUPTION_BUDGET,
        POD,
        SECRET,
        EVENT,
        ENDPOINT_SLICE,
        HTTP_ROUTE,
    )
}


def kind_of(manifest: dict[str, object]) -> ResourceKind:
    """The ResourceKind of a manifest, by its apiVersion and kind."""
    key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
    if key not in KINDS_BY_TYPE:
        raise ValueError(f"the operator does not manage {key[0]} {key[1]}")
    return KINDS_BY_TYPE[key]
