"""What the primary and canary Deployments run while a rollout stands where it does.

One rule moves replicas between the two: the side that grows is asked for its goal at once; the
side that shrinks gives up a replica only as the growing side has one more ready, within the
unavailability the spec allows (maxUnavailable, capped at replicas - 1, as a rolling update does).
Where the growing side's pod waits for a GPU no node has free, one replica may be unavailable (the
PodDisruptionBudget's own limit), so a pool with no spare GPU is never deadlocked: the roll
replaces instead of surging.
"""

from __future__ import annotations

from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.status import RolloutStatus
from berth_operator.builders.deployment import WorkloadShape
from berth_operator.rollout.observation import RolloutObservation


def allowed_unavailable(rollout: RolloutSpec, desired: int, starved: bool) -> int:
    """Replicas that may be unavailable while one side hands over to the other."""
    unavailable = min(rollout.max_unavailable, max(desired - 1, 0))
    return max(unavailable, 1) if starved else unavailable


def handover(shrinking_goal: int, desired: int, growing_ready: int, unavailable: int) -> int:
    """Replicas the shrinking side keeps: its goal once the growing side has enough ready."""
    return min(desired, max(shrinking_goal, desired - unavailable - growing_ready))


def _canary_split(
    rollout: RolloutSpec, state: RolloutStatus, observed: RolloutObservation, stable: str
) -> tuple[int, int]:
    """(primary, canary) replicas at the current canary step."""
    desired = observed.desired_replicas
    step = rollout.steps[min(state.current_step or 0, len(rollout.steps) - 1)]
    canary_goal = step.canary_replicas(desired)
    if canary_goal >= observed.canary_replicas:
        unavailable = allowed_unavailable(rollout, desired, observed.canary_gpu_starved)
        return handover(desired - canary_goal, desired, observed.canary_ready, unavailable), canary_goal
    # The step asks for fewer new-revision replicas than run (the desired count went down).
    unavailable = allowed_unavailable(rollout, desired, observed.primary_gpu_starved)
    canary = handover(canary_goal, desired, observed.primary_ready_on(stable), unavailable)
    return desired - canary_goal, canary


def _winding_down(
    rollout: RolloutSpec, observed: RolloutObservation, primary_revision: str
) -> tuple[int, int | None]:
    """(primary, canary) while the canary goes to zero and the primary, on `primary_revision`, takes
    every replica back."""
    desired = observed.desired_replicas
    if not observed.canary_exists:
        return desired, None
    unavailable = allowed_unavailable(rollout, desired, observed.primary_gpu_starved)
    ready = observed.primary_ready_on(primary_revision)
    return desired, min(observed.canary_replicas, handover(0, desired, ready, unavailable))


def workload_shape(rollout: RolloutSpec, state: RolloutStatus, observed: RolloutObservation) -> WorkloadShape:
    """The two Deployments' revisions and replicas for `state` (from `plan.advance`)."""
    target = observed.target_revision
    stable = state.stable_revision or target
    replacing = bool(state.replacing_without_surge)
    if state.phase == "Canary":
        primary, canary = _canary_split(rollout, state, observed, stable)
        return WorkloadShape(stable, primary, canary, replacing, paused=False)
    if state.phase == "Promoting":
        holding = max(observed.desired_replicas - observed.canary_replicas, 0)
        if observed.primary_revision != target or observed.primary_ready_on(target) < holding:
            # The primary's template rolls to the target at its present size; the canary holds.
            primary = holding
            return WorkloadShape(target, primary, observed.canary_replicas, replacing, paused=False)
        primary, wound = _winding_down(rollout, observed, target)
        if wound is not None:
            # The promoted side grows by at most maxSurge (at least 1) beyond what the canary gives up,
            # as a rolling update would: never the canary's whole size in extra GPUs at once.
            primary = min(primary, observed.desired_replicas - wound + max(rollout.max_surge, 1))
        return WorkloadShape(target, primary, wound, replacing, paused=False)
    if state.phase == "RolledBack":
        primary, wound = _winding_down(rollout, observed, stable)
        if wound is not None:
            # Only the failed revision's ready replicas are worth keeping while the stable side returns.
            wound = min(wound, observed.canary_ready)
        return WorkloadShape(stable, primary, wound, replacing, paused=False)
    if state.phase == "Rolling":
        primary, wound = _winding_down(rollout, observed, target)
        return WorkloadShape(target, primary, wound, replacing, paused=rollout.paused)
    primary, wound = _winding_down(rollout, observed, stable)
    return WorkloadShape(stable, primary, wound, replace_without_surge=False, paused=False)
