"""The runtime Deployment: the pod template plus a rolling update that keeps ready replicas serving."""

from __future__ import annotations

from typing import Any

from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import REVISION_LABEL, common_labels, revision_hash, selector_labels
from berth_operator.builders.pod import pod_template


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
                # maxUnavailable defaults to 0: a replica is only removed once its successor is ready.
                "rollingUpdate": {"maxSurge": rollout.max_surge, "maxUnavailable": rollout.max_unavailable},
            },
            "progressDeadlineSeconds": rollout.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": pod_template(context, config_map_name),
        },
    }
