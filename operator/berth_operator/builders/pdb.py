"""The PodDisruptionBudget: voluntary evictions (node drains) take replicas one at a time.

`maxUnavailable: 1` rather than `minAvailable`: a single-replica deployment must not block node
maintenance forever, and crash-looping pods may always be evicted (AlwaysAllow).
"""

from __future__ import annotations

from typing import Any

from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import common_labels, selector_labels


def build_pod_disruption_budget(context: BuildContext) -> dict[str, Any]:
    name = context.owner.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": name,
            "namespace": context.owner.namespace,
            "labels": common_labels(name),
            "ownerReferences": [context.owner.reference()],
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
