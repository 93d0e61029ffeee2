"""Which runtime pods serve: the ready endpoints of the InferenceDeployment's Service.

Why not the Deployment's readyReplicas or the pods' Ready condition: both lag what clients get.
When a node is lost its pods keep saying Ready (no kubelet is left to say otherwise) until the pod
garbage collector deletes them, most of a minute later, while the EndpointSlice controller has
already dropped them from the Service. Clients reach exactly what the Service's EndpointSlices list
as ready, so that is what status counts.
"""

from __future__ import annotations

from typing import Any, Final

from berth_operator.builders.labels import MANAGED_BY, MANAGED_BY_LABEL

# Set by the EndpointSlice controller on every slice of a Service (it also copies the Service's labels).
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"


def endpoint_slice_selector(name: str) -> str:
    """The label selector of the slices of berth's Service `name` (not of a same-named stranger's)."""
    return f"{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"


def _ready_targets(endpoint_slices: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    targets: set[tuple[str, str | None]] = set()
    for endpoint_slice in endpoint_slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            target = endpoint.get("targetRef") or {}
            serves = conditions.get("ready") is True and conditions.get("terminating") is not True
            if serves and target.get("kind") == "Pod" and target.get("name"):
                targets.add((str(target["name"]), target.get("uid")))
    return targets


def serving_pods(endpoint_slices: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods that are a ready, non-terminating endpoint of the Service and not being deleted.

    A pod counts once however many slices list it (during a slice rewrite it can be in two).
    """
    targets = _ready_targets(endpoint_slices)
    names = {name for name, _ in targets}
    serving = []
    for pod in pods:
        metadata = pod.get("metadata", {})
        name, uid = metadata.get("name"), metadata.get("uid")
        if metadata.get("deletionTimestamp") or name not in names:
            continue
        if uid is None or (name, uid) in targets or (name, None) in targets:
            serving.append(pod)
    return serving
