"""All child objects of one InferenceDeployment, each stamped with a hash of its own content.

The hash (annotation berth.dev/applied-hash) lets the kube layer skip a write when the live object
already carries the same hash: reconciling an unchanged resource makes no writes.
"""

from __future__ import annotations

from typing import Any

from berth_operator.builders.configmap import build_config_map, config_map_name
from berth_operator.builders.context import BuildContext
from berth_operator.builders.deployment import (
    PinnedTemplate,
    WorkloadShape,
    build_canary_deployment,
    build_deployment,
)
from berth_operator.builders.labels import APPLIED_HASH_ANNOTATION, REVISION_LABEL, stable_hash
from berth_operator.builders.pdb import build_pod_disruption_budget
from berth_operator.builders.route import TrafficSplit, build_http_route, build_revision_services
from berth_operator.builders.service import build_service


def stamp_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with berth.dev/applied-hash set to the hash of everything else.

    Returns a new top level and metadata; nested content is shared with the input, not copied
    (the builders hand over fresh dicts, and copying them dominated the build time).
    """
    metadata = manifest["metadata"]
    annotations = {
        key: value for key, value in metadata.get("annotations", {}).items() if key != APPLIED_HASH_ANNOTATION
    }
    unstamped = {**manifest, "metadata": {**metadata, "annotations": annotations}}
    stamped_annotations = {**annotations, APPLIED_HASH_ANNOTATION: stable_hash(unstamped, length=16)}
    return {**manifest, "metadata": {**metadata, "annotations": stamped_annotations}}


def build_children(
    context: BuildContext,
    shape: WorkloadShape | None = None,
    pinned: PinnedTemplate | None = None,
    split: TrafficSplit | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap, primary Deployment, canary Deployment (when the shape has one), Service,
    PodDisruptionBudget and, with spec.serving.httpRoute, the per-revision Services and the HTTPRoute
    (weighted by `split` during a canary), in the order they should be applied. Without a shape: the
    spec's revision on the primary at the resource's count, no canary."""
    config_map = build_config_map(context)
    runtime_config = config_map_name(context.owner.name)
    primary = build_deployment(context, runtime_config, shape, pinned)
    children = [config_map, primary]
    if shape is not None and shape.canary_replicas is not None:
        children.append(build_canary_deployment(context, runtime_config, shape.canary_replicas))
    children += [build_service(context), build_pod_disruption_budget(context)]
    if context.spec.serving.http_route is not None:
        stable = split.stable_revision if split is not None else primary["metadata"]["labels"][REVISION_LABEL]
        children += [*build_revision_services(context, stable), build_http_route(context, split)]
    return [stamp_applied_hash(child) for child in children]
