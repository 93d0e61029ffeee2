"""Writes the operator's share of an InferenceDeployment's status by server-side apply.

Applying to the status subresource under field manager berth-operator means the operator owns its
own fields and conditions (status.conditions is a list map keyed by type), while the autoscaler,
applying under its own manager, owns status.autoscaling and its SLOMet/MetricsUnavailable
conditions; the rollout planner, under berth-rollout, owns status.rollout.
None overwrites another, and no read-modify-write race exists between them.
"""

from __future__ import annotations

from typing import Any

from berth_operator.api import resource as identity
from berth_operator.kube.api import FIELD_MANAGER, KubeApi

AUTOSCALER_FIELD_MANAGER = "berth-autoscaler"
ROLLOUT_FIELD_MANAGER = "berth-rollout"
ECONOMICS_FIELD_MANAGER = "berth-economics"
"""Owns status.economics (handlers/economics.py): GPU-hours, cost and SLO attainment."""


async def apply_status(
    api: KubeApi, namespace: str, name: str, status: dict[str, Any], *, field_manager: str = FIELD_MANAGER
) -> None:
    """Apply `status` (wire form) as the complete set of status fields owned by `field_manager`.

    Fields this manager applied before and leaves out now are removed by the API server.
    """
    await api.apply(
        {
            "apiVersion": identity.API_VERSION,
            "kind": identity.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        },
        subresource="status",
        field_manager=field_manager,
    )
