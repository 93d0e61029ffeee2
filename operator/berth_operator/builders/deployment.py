"""The runtime Deployments: the primary (`<name>`), and during a canary the canary (`<name>-canary`).

The primary's selector is the resource's (immutable for its life); the canary's adds the track label,
so each Deployment's ReplicaSets own only their own pods while the Service, which selects by the
resource's labels alone, sends traffic to both in proportion to their ready endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from berth_operator.api.rollout import RolloutSpec
from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import REVISION_LABEL, common_labels, revision_hash, selector_labels
from berth_operator.builders.pod import pod_template

TRACK_LABEL: Final = "berth.dev/track"
CANARY_TRACK: Final = "canary"
POD_TEMPLATE_HASH_LABEL: Final = "pod-template-hash"
"""Added by the Deployment controller to its ReplicaSets' templates; never part of a template berth
applies."""


def canary_deployment_name(owner_name: str) -> str:
    return f"{owner_name}-canary"


@dataclass(frozen=True)
class WorkloadShape:
    """What the two Deployments run: decided by the rollout plan, built here."""

    primary_revision: str
    """Revision the primary runs: the target (built from the spec) or a pinned earlier one."""
    primary_replicas: int
    canary_replicas: int | None
    """Replicas of the canary Deployment (the target revision); None: no canary Deployment is needed
    (none exists and none is wanted)."""
    replace_without_surge: bool = False
    """The primary's rolling update replaces one replica at a time (surge 0, one unavailable)."""
    paused: bool = False
    """The primary Deployment is paused (spec.rollout.paused during a rolling update)."""


@dataclass(frozen=True)
class PinnedTemplate:
    """The pod template of an earlier revision, as the primary or one of its ReplicaSets keeps it."""

    revision: str
    template: dict[str, Any]


def rolling_update(
    rollout: RolloutSpec, replicas: int, replace_without_surge: bool = False
) -> dict[str, int]:
    """The Deployment's maxSurge and maxUnavailable for `replicas`: maxUnavailable is capped at
    replicas - 1, so a rollout never takes the last ready replica down whatever the spec says (a
    crash-looping new revision then leaves at least one old replica serving); where that leaves no
    room to move (one replica, maxSurge 0), one replica is surged instead. Replacing without surge
    (no GPU free for a surge pod) takes one replica down at a time, as the PodDisruptionBudget allows."""
    if replace_without_surge:
        return {"maxSurge": 0, "maxUnavailable": 1}
    unavailable = min(rollout.max_unavailable, max(replicas - 1, 0))
    surge = rollout.max_surge if rollout.max_surge + unavailable > 0 else 1
    return {"maxSurge": surge, "maxUnavailable": unavailable}


def _template_without_controller_labels(template: dict[str, Any]) -> dict[str, Any]:
    metadata = template.get("metadata", {})
    labels = {
        key: value for key, value in (metadata.get("labels") or {}).items() if key != POD_TEMPLATE_HASH_LABEL
    }
    return {**template, "metadata": {**metadata, "labels": labels}}


def build_deployment(
    context: BuildContext,
    config_map_name: str,
    shape: WorkloadShape | None = None,
    pinned: PinnedTemplate | None = None,
) -> dict[str, Any]:
    """The primary Deployment. Without a shape: the spec's revision at the resource's count. With
    one whose revision is `pinned`'s: that earlier revision's template, restored as it ran."""
    rollout = context.spec.rollout
    name = context.owner.name
    shape = shape or WorkloadShape(revision_hash(context), context.replicas, None)
    if pinned is not None and pinned.revision == shape.primary_revision:
        revision, template = pinned.revision, _template_without_controller_labels(pinned.template)
    else:
        revision, template = revision_hash(context), pod_template(context, config_map_name)
    spec: dict[str, Any] = {
        "replicas": shape.primary_replicas,
        "selector": {"matchLabels": selector_labels(name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": rolling_update(rollout, shape.primary_replicas, shape.replace_without_surge),
        },
        "progressDeadlineSeconds": rollout.progress_deadline_seconds,
        "revisionHistoryLimit": 3,
        "template": template,
    }
    if shape.paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": context.owner.namespace,
            "labels": {**common_labels(name), REVISION_LABEL: revision},
            "ownerReferences": [context.owner.reference()],
        },
        "spec": spec,
    }


def build_canary_deployment(context: BuildContext, config_map_name: str, replicas: int) -> dict[str, Any]:
    """The canary Deployment: the spec's (target) revision, on the canary track."""
    name = context.owner.name
    template = pod_template(context, config_map_name)
    template_metadata = template["metadata"]
    template = {
        **template,
        "metadata": {
            **template_metadata,
            "labels": {**template_metadata["labels"], TRACK_LABEL: CANARY_TRACK},
        },
    }
    selector = {**selector_labels(name), TRACK_LABEL: CANARY_TRACK}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_deployment_name(name),
            "namespace": context.owner.namespace,
            "labels": {
                **common_labels(name),
                REVISION_LABEL: revision_hash(context),
                TRACK_LABEL: CANARY_TRACK,
            },
            "ownerReferences": [context.owner.reference()],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": rolling_update(context.spec.rollout, replicas),
            },
            "progressDeadlineSeconds": context.spec.rollout.progress_deadline_seconds,
            "revisionHistoryLimit": 1,
            "template": template,
        },
    }
