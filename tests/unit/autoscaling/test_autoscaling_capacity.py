"""Token-weighted load and the per-replica capacity learned from the metrics."""

from __future__ import annotations

import pytest
from autoscaling_factories import NOW, SLO, signals

from berth_operator.autoscaling.capacity import (
    Load,
    SloTargets,
    Tuning,
    latencies_within,
    learn_capacity,
    measure_load,
    slo_breaches,
    slo_summary,
)
from berth_operator.autoscaling.sizing import survivor_load
from berth_operator.autoscaling.state import GaugeSample

TUNING = Tuning()


def test_load_weighs_prompt_tokens_by_their_cost() -> None:
    load = measure_load(
        signals(
            generation_tokens_per_second=1000.0, prompt_tokens_per_second=4000.0, requests_per_second=2.0
        ),
        TUNING,
    )
    assert load.served == pytest.approx(1000.0 + 0.15 * 4000.0)


def test_arriving_load_adds_queue_growth_and_queued_work_is_counted() -> None:
    load = measure_load(
        signals(
            generation_tokens_per_second=800.0,
            requests_per_second=2.0,
            waiting_growth_per_second=3.0,
            waiting_requests=10.0,
        ),
        TUNING,
    )
    assert load.arriving == pytest.approx((2.0 + 3.0) * 400.0)
    assert load.queued == pytest.approx(10 * 400.0)


def test_a_shrinking_queue_does_not_lower_the_arriving_load_below_what_is_served() -> None:
    load = measure_load(
        signals(generation_tokens_per_second=800.0, requests_per_second=2.0, waiting_growth_per_second=-5.0),
        TUNING,
    )
    assert load.arriving == pytest.approx(800.0)


def test_breaches_name_the_numbers() -> None:
    breached = signals(ttft_p95_seconds=0.64, itl_p95_seconds=0.07)
    assert slo_breaches(breached, SLO) == ("TTFT p95 640ms > 500ms", "ITL p95 70ms > 50ms")
    assert slo_breaches(signals(), SLO) == ()
    assert slo_breaches(breached, SloTargets(ttft_p95_seconds=None, itl_p95_seconds=None)) == ()
    assert slo_summary(signals(ttft_p95_seconds=None), SLO) == (
        "TTFT p95 n/a (no requests in window); ITL p95 20ms <= 50ms"
    )


def test_floor_rises_with_load_served_within_the_slo_and_lifts_a_lower_ceiling() -> None:
    observed = signals(
        generation_tokens_per_second=3000.0, requests_per_second=6.0, serving_replicas_average=2.0
    )
    load = measure_load(observed, TUNING)
    ceiling, floor = learn_capacity(observed, load, SLO, ceiling=1000.0, floor=900.0, tuning=TUNING)
    assert floor == pytest.approx(1500.0)
    assert ceiling == pytest.approx(1500.0)
    ceiling, floor = learn_capacity(observed, load, SLO, ceiling=4000.0, floor=2000.0, tuning=TUNING)
    assert (ceiling, floor) == (4000.0, 2000.0)


def test_ceiling_is_learned_at_saturation_and_smoothed() -> None:
    saturated = signals(
        ttft_p95_seconds=2.0,
        waiting_requests=30.0,
        generation_tokens_per_second=1800.0,
        requests_per_second=4.5,
        serving_replicas_average=2.0,
    )
    load = measure_load(saturated, TUNING)
    assert learn_capacity(saturated, load, SLO, None, None, TUNING)[0] == pytest.approx(900.0)
    assert learn_capacity(saturated, load, SLO, 1300.0, None, TUNING)[0] == pytest.approx(1100.0)


def test_a_window_that_began_before_saturation_is_corrected_by_running_now_over_average() -> None:
    saturated = signals(
        ttft_p95_seconds=2.0,
        waiting_requests=30.0,
        generation_tokens_per_second=600.0,
        requests_per_second=1.5,
        running_requests=60.0,
        running_requests_average=40.0,
    )
    load = measure_load(saturated, TUNING)
    assert learn_capacity(saturated, load, SLO, None, None, TUNING)[0] == pytest.approx(900.0)


def test_an_itl_breach_scales_the_observed_rate_back_to_the_target() -> None:
    slow = signals(itl_p95_seconds=0.1, generation_tokens_per_second=2000.0, requests_per_second=5.0)
    load = measure_load(slow, TUNING)
    assert learn_capacity(slow, load, SLO, None, 3000.0, TUNING)[0] == pytest.approx(1000.0)


def test_a_ttft_breach_without_a_queue_teaches_nothing() -> None:
    prefill_bound = signals(ttft_p95_seconds=0.9, waiting_requests=0.0)
    load = measure_load(prefill_bound, TUNING)
    assert learn_capacity(prefill_bound, load, SLO, 1000.0, 400.0, TUNING) == (1000.0, 400.0)


def test_newly_reporting_replicas_do_not_dilute_the_per_replica_rate() -> None:
    # Two replicas, one of them reporting for only half the window: 1.5 replica-windows served it.
    observed = signals(
        generation_tokens_per_second=1500.0,
        requests_per_second=3.0,
        reporting_replicas=2,
        serving_replicas_average=1.5,
    )
    _, floor = learn_capacity(observed, measure_load(observed, TUNING), SLO, None, None, TUNING)
    assert floor == pytest.approx(1000.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scale_up_utilization": 1.5}, "scale_up_utilization: 1.5 must be in"),
        ({"scale_down_utilization": 0.9}, "scale_down_utilization \\(0.9\\) must not exceed"),
        ({"prompt_token_cost": -1.0}, "prompt_token_cost: -1.0 must be >= 0"),
        ({"backlog_drain_seconds": 0.0}, "backlog_drain_seconds: 0.0 must be > 0"),
    ],
)
def test_tuning_rejects_bad_values_naming_the_field(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tuning(**overrides)


def test_while_requests_queue_the_window_is_corrected_and_the_last_interval_s_growth_counts() -> None:
    queueing = signals(
        waiting_requests=30.0,
        running_requests=60.0,
        running_requests_average=30.0,
        generation_tokens_per_second=800.0,
        requests_per_second=2.0,
        waiting_growth_per_second=1.0,
    )
    ten_seconds_ago = GaugeSample(NOW - 10, waiting_requests=0.0, running_requests=30.0)
    # 800 tok/s x 60/30 running now/average + 30 requests queued in 10 s x 400 tok
    assert measure_load(queueing, TUNING, ten_seconds_ago, NOW).arriving == pytest.approx(2800.0)
    # without a recent evaluation, the window's slope: 1 req/s
    assert measure_load(queueing, TUNING).arriving == pytest.approx(2000.0)
    stale = GaugeSample(NOW - 600, waiting_requests=0.0, running_requests=30.0)
    assert measure_load(queueing, TUNING, stale, NOW).arriving == pytest.approx(2000.0)


def test_a_queue_that_drains_adds_nothing_and_is_not_rising_demand_by_itself() -> None:
    draining = signals(waiting_requests=10.0, generation_tokens_per_second=800.0, requests_per_second=2.0)
    before = GaugeSample(NOW - 10, waiting_requests=50.0, running_requests=4.0)
    load = measure_load(draining, TUNING, before, NOW)
    assert load.arriving == pytest.approx(800.0)
    assert load.queue_growth == pytest.approx(-4.0)
    assert load.rising  # requests still wait: the replicas are full now


@pytest.mark.parametrize(
    ("running_now", "running_before", "average", "expected", "rising"),
    [
        (60.0, 60.0, 30.0, 1600.0, True),
        (60.0, 30.0, 30.0, 800.0, False),
        (33.0, 33.0, 30.0, 800.0, False),
        (20.0, 20.0, 30.0, 800.0, False),
        (40.0, 40.0, 30.0, 800.0, False),
        (500.0, 500.0, 400.0, 1000.0, True),
    ],
    ids=[
        "twice the window's average",
        "one sample's jump",
        "within the noise margin",
        "falling",
        "a third more of a small count is Poisson noise (2 sigma = 37%)",
        "a quarter more of a large count is a rise (2 sigma = 10%)",
    ],
)
def test_without_a_queue_the_requests_in_flight_now_lead_the_window(
    running_now: float, running_before: float, average: float, expected: float, rising: bool
) -> None:
    calm = signals(
        running_requests=running_now,
        running_requests_average=average,
        generation_tokens_per_second=800.0,
        requests_per_second=2.0,
    )
    load = measure_load(calm, TUNING, GaugeSample(NOW - 10, 0.0, running_before), NOW)
    assert load.arriving == pytest.approx(expected)
    assert load.rising is rising


def test_full_batch_slots_with_a_queue_teach_the_ceiling_before_the_slo_is_breached() -> None:
    # Two replicas of 64 slots, all taken, requests waiting, TTFT p95 still within target.
    full = signals(
        waiting_requests=20.0,
        running_requests=128.0,
        running_requests_average=128.0,
        generation_tokens_per_second=6000.0,
        requests_per_second=15.0,
        reporting_replicas=2,
        serving_replicas_average=2.0,
    )
    load = measure_load(full, TUNING)
    assert learn_capacity(full, load, SLO, None, None, TUNING, batch_slots=64)[0] == pytest.approx(3000.0)
    assert learn_capacity(full, load, SLO, None, None, TUNING)[0] is None  # slots unknown: a floor only


@pytest.mark.parametrize(
    ("ttft", "itl", "slo", "expected"),
    [
        (0.3, 0.03, SLO, True),  # 60% of 500ms and of 50ms
        (0.31, 0.03, SLO, False),
        (0.2, None, SLO, False),  # a target with nothing observed is no evidence
        (0.2, None, SloTargets(ttft_p95_seconds=0.5, itl_p95_seconds=None), True),
        (0.2, 0.02, SloTargets(ttft_p95_seconds=None, itl_p95_seconds=None), False),
    ],
)
def test_latencies_within_a_share_of_their_targets(
    ttft: float, itl: float | None, slo: SloTargets, expected: bool
) -> None:
    observed = signals(ttft_p95_seconds=ttft, itl_p95_seconds=itl)
    assert latencies_within(observed, slo, 0.6) is expected


def test_survivors_carry_what_the_window_served_unless_requests_wait_grown_by_the_trend() -> None:
    load = Load(served=1000.0, arriving=1500.0, queued=0.0)
    assert survivor_load(load, waiting=0.0, growth=1.0).arriving == 1000.0
    assert survivor_load(load, waiting=0.0, growth=1.2).arriving == pytest.approx(1200.0)
    assert survivor_load(load, waiting=3.0, growth=1.2).arriving == pytest.approx(1800.0)
