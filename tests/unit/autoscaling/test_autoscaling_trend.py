"""The demand's trend: fitted to the request rates the recent evaluations kept in status, projected
ahead, bounded, and what it adds to a scale-up on a slow rise that no single window shows."""

from __future__ import annotations

import pytest
from autoscaling_factories import NOW, signals, steady, targets

from berth_operator.autoscaling.capacity import Tuning
from berth_operator.autoscaling.policy import Action, decide
from berth_operator.autoscaling.state import Recommendation, ScalingHistory
from berth_operator.autoscaling.trend import demand_growth, rate_jump

TUNING = Tuning()


def rates(rate_at: dict[float, float]) -> list[Recommendation]:
    """Recommendations at NOW - age that saw the given request rates (the counts do not matter)."""
    return [Recommendation(NOW - age, 1, 1, rate) for age, rate in rate_at.items()]


def test_a_steady_rise_is_projected_over_the_horizon() -> None:
    # 20 req/s rising by 0.01 req/s each second: within 300 s, 3 req/s more (15%).
    history = rates({age: 20.0 - 0.01 * age for age in range(170, 0, -10)})
    growth = demand_growth(history, NOW, 20.0, TUNING)
    assert growth == pytest.approx(1 + 0.01 * TUNING.trend_horizon_seconds / 20.0)


def test_flat_or_falling_demand_adds_nothing() -> None:
    flat = rates({age: 20.0 for age in range(170, 0, -10)})
    falling = rates({age: 20.0 + 0.05 * age for age in range(170, 0, -10)})
    assert demand_growth(flat, NOW, 20.0, TUNING) == 1.0
    assert demand_growth(falling, NOW, 20.0, TUNING) == 1.0


def test_an_edge_adds_at_most_the_bound_the_gauges_take_over_from() -> None:
    edge = rates({age: 10.0 if age > 60 else 40.0 for age in range(170, 0, -10)})
    assert demand_growth(edge, NOW, 40.0, TUNING) == TUNING.max_trend_growth


def test_too_short_a_history_or_rates_older_than_the_fit_add_nothing() -> None:
    recent = rates({age: 20.0 - 0.1 * age for age in (60, 30, 10)})
    old = rates({age: 20.0 - 0.01 * age for age in range(600, 200, -10)})
    unrated = [Recommendation(NOW - age, 1, 1) for age in range(170, 0, -10)]
    assert demand_growth(recent, NOW, 20.0, TUNING) == 1.0
    assert demand_growth(old, NOW, 20.0, TUNING) == 1.0
    assert demand_growth(unrated, NOW, 20.0, TUNING) == 1.0


def run_ramp(slope: float) -> list[Action]:
    """A replica of 64 batch slots running 40 requests (below the 70% that adds one) while the
    request rate rises by `slope` req/s each second, evaluated every 10 s through the history."""
    spec, history, actions = targets(batch_slots=64), ScalingHistory(), []
    for step in range(20):
        now = NOW + 10.0 * step
        observation = signals(
            running_requests=40.0, running_requests_average=40.0, requests_per_second=20.0 + slope * 10 * step
        )
        decision = decide(observation, spec, steady(1), history, now)
        history, actions = decision.history, [*actions, decision.action]
        if decision.apply:
            break
    return actions


def test_a_slow_rise_adds_a_replica_before_the_slots_fill() -> None:
    rising = run_ramp(0.02)
    assert rising[-1] is Action.SCALE_UP
    assert len(rising) > TUNING.trend_seconds / 2 / 10  # not before the fit has points to go on
    assert Action.SCALE_UP not in run_ramp(0.0)


def test_the_reason_says_what_the_trend_added() -> None:
    spec, history = (
        targets(batch_slots=64),
        ScalingHistory(recommendations=tuple(rates({150: 17.0, 100: 18.0, 50: 19.0}))),
    )
    observation = signals(running_requests=40.0, running_requests_average=40.0, requests_per_second=20.0)
    decision = decide(observation, spec, steady(1), history, NOW)
    assert decision.action is Action.SCALE_UP
    assert "the demand grows within 300s at its slope over the last 180s" in decision.reason


@pytest.mark.parametrize(
    ("before", "now", "jumped"),
    [
        (10.0, 14.0, True),  # 10 s into a 4x edge: 40% more, 2 sigma of the noise is 0.56 req/s
        (10.0, 10.5, False),  # within the 15% margin
        (0.5, 0.6, False),  # 20% more, but of 0.5 req/s: within 2 sigma (0.12 req/s)
        (10.0, 8.0, False),  # falling
    ],
)
def test_a_windowed_rate_jump_beyond_its_poisson_noise_is_a_rise(
    before: float, now: float, jumped: bool
) -> None:
    last = rates({10: before})
    assert (rate_jump(last, NOW, now, 60.0, TUNING) == before) is jumped


def test_without_a_recent_last_rate_there_is_no_jump() -> None:
    assert rate_jump([], NOW, 40.0, 60.0, TUNING) is None
    assert rate_jump(rates({600: 10.0}), NOW, 40.0, 60.0, TUNING) is None
    assert rate_jump([Recommendation(NOW - 10, 1, 1, None)], NOW, 40.0, 60.0, TUNING) is None


def test_a_scale_down_due_at_a_rising_edge_waits_while_the_windowed_rate_jumps() -> None:
    # Four replicas, a window of low load (the down recommendations all say 1), and the windowed
    # rate up 40% since the last evaluation while the gauge of this sample happens to be calm.
    quiet = tuple(Recommendation(NOW - age, 1, 1, 10.0) for age in range(310, 0, -10))
    history = ScalingHistory(capacity_ceiling=6000.0, capacity_floor=3000.0, recommendations=quiet)
    edge = signals(
        requests_per_second=14.0,
        generation_tokens_per_second=2800.0,
        running_requests=12.0,
        running_requests_average=12.0,
    )
    held = decide(edge, targets(batch_slots=64), steady(4), history, NOW)
    assert held.action is Action.HOLD
    assert "14.0 requests/s over the window, 10.0 at the last evaluation" in held.reason
    calm = decide(
        signals(
            requests_per_second=10.0,
            generation_tokens_per_second=2000.0,
            running_requests=12.0,
            running_requests_average=12.0,
        ),
        targets(batch_slots=64),
        steady(4),
        history,
        NOW,
    )
    assert calm.action is Action.SCALE_DOWN
