"""What the two Deployments run at each point of a rollout: the handover rule, table-driven.

The side that grows is asked for its goal at once; the side that shrinks keeps replicas until the
growing side has them ready (within maxUnavailable, capped at N-1), and one replica may go when the
growing side waits for a GPU nobody has free -- so a full GPU pool replaces instead of deadlocking.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from rollout_factories import STABLE, TARGET, observed

from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.status import RolloutStatus
from berth_operator.builders.deployment import WorkloadShape
from berth_operator.rollout.shape import workload_shape

CANARY = RolloutSpec.model_validate(
    {"strategy": "Canary", "steps": [{"replicas": 1}, {"percent": 50}, {"percent": 100}]}
)


def at_step(step: int) -> RolloutStatus:
    return RolloutStatus(phase="Canary", stable_revision=STABLE, canary_revision=TARGET, current_step=step)


@pytest.mark.parametrize(
    ("step", "canary_ready", "starved", "primary", "canary"),
    [
        (0, 0, False, 4, 1),  # the canary pod starting: stable keeps all 4 (a surge)
        (0, 1, False, 3, 1),  # ready: stable gives one up
        (1, 1, False, 3, 2),  # step 2 (50%): the second canary pod starting
        (1, 2, False, 2, 2),
        (2, 2, False, 2, 4),  # 100%: stable shrinks as canary replicas are ready
        (2, 4, False, 0, 4),
        (0, 0, True, 3, 1),  # no GPU for the canary pod: one stable replica makes room
        (1, 1, True, 2, 2),
    ],
)
def test_canary_steps_hand_over_as_replicas_become_ready(
    step: int, canary_ready: int, starved: bool, primary: int, canary: int
) -> None:
    seen = observed(
        canary_exists=True, canary_replicas=1, canary_ready=canary_ready, canary_gpu_starved=starved
    )
    shape = workload_shape(CANARY, at_step(step), seen)
    assert shape == WorkloadShape(STABLE, primary, canary, replace_without_surge=False, paused=False)


def test_max_unavailable_lets_the_stable_side_shrink_ahead() -> None:
    spec = CANARY.model_copy(update={"max_unavailable": 1})
    shape = workload_shape(spec, at_step(1), observed(canary_exists=True, canary_replicas=1, canary_ready=0))
    assert (shape.primary_replicas, shape.canary_replicas) == (3, 2)


def test_a_canary_step_larger_than_the_desired_count_is_capped() -> None:
    spec = RolloutSpec.model_validate({"strategy": "Canary", "steps": [{"replicas": 10}]})
    shape = workload_shape(spec, at_step(0), observed(desired_replicas=2, canary_exists=True, canary_ready=2))
    assert (shape.primary_replicas, shape.canary_replicas) == (0, 2)


def test_promotion_rolls_the_primary_at_its_size_then_takes_the_canary_back() -> None:
    promoting = at_step(2).model_copy(update={"phase": "Promoting"})
    # The primary's template goes to the target at its present size; the canary holds.
    rolling = workload_shape(
        CANARY, promoting, observed(canary_exists=True, canary_replicas=2, canary_ready=2)
    )
    assert rolling == WorkloadShape(TARGET, 2, 2, False, False)
    # The primary runs the target on its two replicas: it grows, the canary goes as it is ready.
    grown = observed(
        primary_revision=TARGET,
        primary_ready={TARGET: 2},
        canary_exists=True,
        canary_replicas=2,
        canary_ready=2,
    )
    # The primary runs the target on its two replicas: it grows by maxSurge (1) at a time, and the
    # canary goes as the primary's new replicas are ready.
    assert workload_shape(CANARY, promoting, grown) == WorkloadShape(TARGET, 3, 2, False, False)
    three = replace(grown, primary_ready={TARGET: 3})
    assert workload_shape(CANARY, promoting, three) == WorkloadShape(TARGET, 4, 1, False, False)
    done = replace(grown, primary_ready={TARGET: 4})
    assert workload_shape(CANARY, promoting, done).canary_replicas == 0


def test_a_rollback_restores_the_stable_side_before_the_canary_goes() -> None:
    rolled_back = at_step(1).model_copy(update={"phase": "RolledBack", "failed_revision": TARGET})
    seen = observed(primary_ready={STABLE: 2}, canary_exists=True, canary_replicas=2, canary_ready=2)
    assert workload_shape(CANARY, rolled_back, seen) == WorkloadShape(STABLE, 4, 2, False, False)
    back = replace(seen, primary_ready={STABLE: 4})
    assert workload_shape(CANARY, rolled_back, back).canary_replicas == 0
    # Canary replicas that are not ready cost nothing to remove.
    crashed = replace(seen, canary_ready=0, primary_ready={STABLE: 3})
    assert workload_shape(CANARY, rolled_back, crashed).canary_replicas == 0
    half = replace(seen, canary_ready=1, primary_ready={STABLE: 2})
    assert workload_shape(CANARY, rolled_back, half).canary_replicas == 1


def test_a_rollback_with_no_gpu_free_removes_one_canary_replica_at_a_time() -> None:
    rolled_back = at_step(1).model_copy(update={"phase": "RolledBack", "failed_revision": TARGET})
    seen = observed(
        primary_ready={STABLE: 2},
        primary_gpu_starved=True,
        canary_exists=True,
        canary_replicas=2,
        canary_ready=2,
    )
    assert workload_shape(CANARY, rolled_back, seen).canary_replicas == 1


def test_rolling_and_stable_run_everything_on_the_primary_and_pause_only_a_rolling_update() -> None:
    spec = RolloutSpec(paused=True)
    rolling = RolloutStatus(
        phase="Rolling", stable_revision=STABLE, canary_revision=TARGET, replacing_without_surge=True
    )
    assert workload_shape(spec, rolling, observed()) == WorkloadShape(TARGET, 4, None, True, True)
    stable = RolloutStatus(phase="Stable", stable_revision=TARGET)
    assert workload_shape(spec, stable, observed(target_revision=TARGET)) == WorkloadShape(TARGET, 4, None)


def test_an_idle_canary_deployment_is_kept_at_zero() -> None:
    stable = RolloutStatus(phase="Stable", stable_revision=TARGET)
    seen = observed(target_revision=TARGET, primary_ready={TARGET: 4}, canary_exists=True, canary_replicas=0)
    assert workload_shape(CANARY, stable, seen).canary_replicas == 0
