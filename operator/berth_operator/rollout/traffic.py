"""A canary's share of a Gateway route's traffic: the step's share of the desired replicas once its
new-revision replicas are ready, their share of the ready replicas until then (a weight never sends
traffic to a backend that has nothing ready to take it)."""

from __future__ import annotations

from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.status import RolloutStatus
from berth_operator.builders.route import TrafficSplit


def traffic_split(rollout: RolloutSpec, state: RolloutStatus, desired: int) -> TrafficSplit | None:
    """The split during a canary step; None outside one (the route sends everything to the Service)."""
    if state.phase != "Canary" or state.stable_revision is None or not rollout.steps or desired < 1:
        return None
    step = rollout.steps[min(state.current_step or 0, len(rollout.steps) - 1)]
    goal = step.canary_replicas(desired)
    if (state.canary_ready_replicas or 0) >= goal:
        weight = round(100 * goal / desired)
    else:
        weight = state.canary_share_percent or 0
    return TrafficSplit(state.stable_revision, max(0, min(weight, 100)))
