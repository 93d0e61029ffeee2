"""The runtime Deployment: the pod template plus a rolling update that keeps ready replicas serving."""

from __future__ import annotations

from typing import Any

from berth_operator.api.rollout import RolloutSpec
from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import REVISION_LABEL, common_labels, revision_hash, selector_labels
from berth_operator.builders.pod import pod_template


def rolling_update(rollout: RolloutSpec, replicas: int) -> dict[str, int]:
    """The Deployment's maxSurge and maxUnavailable for `replicas`: maxUnavailable is capped at
    replicas - 1, so a rollout never takes the last ready replica down whatever the spec says (a
    crash-looping new revision then leaves at least one old replica serving); where that leaves no
    room to move (one replica, maxSurge 0), one replica is surged instead."""
    unavailable = min(rollout.max_unavailable, max(replicas - 1, 0))
    surge = rollout.max_surge if rollout.max_surge + unavailable > 0 else 1
    return {"maxSurge": surge, "maxUnavailable": unavailable}


def build_deployment(context: BuildContext, config_map_name: str) -> dict[str, Any]:
    rollout = context.spec.rollout
    name = context.owner.name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": context.owner.namespace,
            "labels": {**common_labels(name), REVISION_LABEL: revision_hash(context)},
            "ownerReferences": [context.owner.reference()],
        },
        "spec": {
            "replicas": context.replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": rolling_update(rollout, context.replicas),
            },
            "progressDeadlineSeconds": rollout.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": pod_template(context, config_map_name),
        },
    }
