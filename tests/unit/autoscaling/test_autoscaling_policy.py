"""The autoscaling policy, one decision at a time: what a single evaluation decides from the signals,
the spec and the learned capacity (sizing, bounds, missing metrics, dry run, the reason text).
Sequences of decisions over time are in test_autoscaling_policy_over_time.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
from autoscaling_factories import NOW, learned, serving, signals, steady, targets

from berth_operator.autoscaling.policy import Action, ReplicaCounts, Targets, decide
from berth_operator.autoscaling.signals import MetricsUnavailable, Observation
from berth_operator.autoscaling.sizing import in_flight
from berth_operator.autoscaling.state import GaugeSample, ScalingHistory

GROWING_ON_TWO = serving(1600.0, replicas=2, waiting_requests=1.0, waiting_growth_per_second=5.5)
"""Two replicas serving 4 req/s while 5.5 req/s more start queueing."""


@pytest.mark.parametrize(
    ("observation", "spec", "current", "history", "expected"),
    [
        pytest.param(
            GROWING_ON_TWO,
            targets(),
            steady(2),
            learned(ceiling=1000.0),
            5,  # (4 served + 5.5 queueing) req/s x 400 tok + 400 tok / 60 s = 3807 tok/s at 80% of 1000
            id="scales up at once to what token demand needs, not +1",
        ),
        pytest.param(
            serving(800.0, waiting_requests=60.0, ttft_p95_seconds=2.0),
            targets(),
            steady(1),
            learned(ceiling=1000.0),
            2,  # 800 tok/s + 60 x 400 tok queued / 60 s = 1200 tok/s at 80% of 900 (800 seen saturated)
            id="queued work is part of the demand",
        ),
        pytest.param(
            signals(ttft_p95_seconds=0.9, generation_tokens_per_second=0.0),
            targets(),
            steady(3),
            ScalingHistory(),
            4,
            id="a breach with unknown capacity and nothing starting adds one replica",
        ),
        pytest.param(
            serving(1200.0, replicas=2, ttft_p95_seconds=0.9, waiting_requests=5.0),
            targets(),
            ReplicaCounts(desired=4, ready=2),
            learned(ceiling=1000.0),
            4,  # 1233 tok/s needs 2 at 80% of 800 (learned): the 2 starting already cover it
            id="replicas still starting are capacity on its way: the same breach adds nothing",
        ),
        pytest.param(
            serving(
                1200.0, replicas=2, ttft_p95_seconds=0.9, waiting_requests=5.0, waiting_growth_per_second=5.0
            ),
            targets(),
            ReplicaCounts(desired=4, ready=2),
            learned(ceiling=1000.0),
            6,  # (3 + 5) req/s x 400 + 5 x 400 / 60 s = 3233 tok/s at 80% of 800 (learned) -> 6
            id="demand beyond the starting replicas' capacity scales up further while they start",
        ),
        pytest.param(
            serving(800.0, waiting_requests=1.0, waiting_growth_per_second=20.0),
            targets(gpus_per_replica=2, max_gpus=6),
            steady(1),
            learned(ceiling=1000.0),
            3,  # 8800 tok/s wants 11; maxGpus 6 / 2 GPUs per replica
            id="the GPU budget caps a scale-up below maxReplicas",
        ),
        pytest.param(
            signals(),
            targets(),
            steady(12),
            learned(ceiling=1000.0),
            8,
            id="a count above the bounds is lowered",
        ),
        pytest.param(
            signals(),
            targets(min_replicas=2),
            steady(1),
            learned(ceiling=1000.0),
            2,
            id="a count below minReplicas is raised to it",
        ),
        pytest.param(
            MetricsUnavailable("Prometheus at http://p:9090 is unavailable: ConnectError"),
            targets(),
            steady(5),
            learned(ceiling=1000.0),
            5,
            id="missing metrics hold the current count",
        ),
        pytest.param(
            MetricsUnavailable("no series"),
            targets(),
            steady(11),
            learned(ceiling=1000.0),
            8,
            id="missing metrics still respect the bounds",
        ),
    ],
)
def test_single_decision(
    observation: Observation, spec: Targets, current: ReplicaCounts, history: ScalingHistory, expected: int
) -> None:
    decision = decide(observation, spec, current, history, NOW)
    assert decision.replicas == expected, decision.reason
    if expected > current.desired:
        assert decision.action is Action.SCALE_UP
    elif expected < current.desired:
        assert decision.action is Action.SCALE_DOWN
    else:
        assert decision.action is Action.HOLD
    assert decision.apply == (expected != current.desired)


def test_long_prompts_need_more_replicas_than_short_ones_at_the_same_request_rate() -> None:
    def needed(prompt_tokens: float) -> int:
        observation = signals(
            generation_tokens_per_second=800.0,
            prompt_tokens_per_second=4.0 * prompt_tokens,
            requests_per_second=4.0,
            waiting_requests=1.0,
            waiting_growth_per_second=6.0,
        )
        return decide(observation, targets(), steady(1), learned(ceiling=6000.0), NOW).replicas

    assert needed(50.0) == 1  # 10 req/s x (200 + 7.5) tok = 2075 tok/s <= 80% of 6000
    assert needed(8000.0) == 3  # 10 req/s x (200 + 1200) tok = 14000 tok/s at 80% of 6000


def test_reason_carries_the_numbers() -> None:
    observation = serving(1000.0, ttft_p95_seconds=0.64, waiting_requests=10.0, waiting_growth_per_second=5.0)
    decision = decide(observation, targets(), steady(1), learned(ceiling=1000.0), NOW)
    assert decision.replicas > 1
    assert "TTFT p95 640ms > 500ms" in decision.reason
    assert "tok/s" in decision.reason
    assert decision.reason.startswith(f"scaled 1 -> {decision.replicas}:")
    assert decision.slo_met is False
    record = decision.history.decisions[-1]
    assert (record.time, record.from_replicas, record.to_replicas) == (NOW, 1, decision.replicas)


def test_missing_metrics_are_reported_and_do_not_learn() -> None:
    history = learned(ceiling=1000.0)
    decision = decide(MetricsUnavailable("newest sample is 95s old"), targets(), steady(3), history, NOW)
    assert decision.metrics_available is False
    assert decision.slo_met is None
    assert "metrics unavailable (newest sample is 95s old)" in decision.reason
    assert decision.history.capacity_ceiling == 1000.0
    assert decision.history.recommendations == ()


def test_the_gpu_budget_wins_over_min_replicas() -> None:
    spec = targets(min_replicas=4, gpus_per_replica=4, max_gpus=8)
    assert spec.bounds() == (2, 2)
    assert decide(signals(), spec, steady(4), learned(), NOW).replicas == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_replicas": 0}, "maxReplicas: 0 must be >= minReplicas (1)"),
        ({"min_replicas": -1}, "minReplicas: -1 must be >= 0"),
        ({"max_gpus": -2}, "maxGpus: -2 must be >= 0"),
        ({"scale_down_stabilization_seconds": -1.0}, "scale_down_stabilization_seconds: -1.0 must be >= 0"),
    ],
)
def test_targets_reject_bad_values_naming_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        targets(**overrides)


def test_targets_bounds_without_a_gpu_budget() -> None:
    assert replace(targets(), max_gpus=None).bounds() == (1, 8)


def test_dry_run_decides_and_reports_but_never_applies_or_claims_replicas() -> None:
    history = learned(ceiling=1000.0)
    decision = decide(GROWING_ON_TWO, targets(dry_run=True), steady(2), history, NOW)
    assert decision.replicas == 5
    assert decision.action is Action.SCALE_UP
    assert decision.apply is False
    assert decision.reason.startswith("dry run: would scale 2 -> 5:")
    assert decision.history.last_scale_up_time is None


def test_capacity_is_learned_from_a_saturated_breach() -> None:
    observation = serving(1800.0, replicas=2, ttft_p95_seconds=1.5, waiting_requests=20.0)
    decision = decide(observation, targets(), steady(2), ScalingHistory(), NOW)
    assert decision.history.capacity_ceiling == pytest.approx(900.0)
    # 1800 tok/s arriving + 20 x 400 tok queued / 60 s = 1933 tok/s, at 80% of 900 each -> 3
    assert decision.replicas == 3


@pytest.mark.parametrize(("breached_for", "expected"), [(10.0, 2), (40.0, 3)])
def test_a_queueing_breach_the_model_cannot_explain_adds_one_after_a_while(
    breached_for: float, expected: int
) -> None:
    # The learned capacity says 2 replicas are plenty, yet requests queue and TTFT is over target.
    observation = serving(300.0, replicas=2, ttft_p95_seconds=0.9, waiting_requests=5.0)
    history = learned(ceiling=1000.0, breach_since=NOW - breached_for)
    decision = decide(observation, targets(), steady(2), history, NOW)
    assert decision.replicas == expected, decision.reason


@pytest.mark.parametrize(
    ("last_sample", "expected"), [(None, 3), (GaugeSample(NOW - 10, 0.0, 4.0), 9)], ids=["none", "10 s ago"]
)
def test_a_queue_that_grew_since_the_last_evaluation_sizes_the_scale_up(
    last_sample: GaugeSample | None, expected: int
) -> None:
    # 120 requests queued in the last 10 s, while the 60 s window's growth is still flat.
    observation = serving(1000.0, ttft_p95_seconds=2.0, waiting_requests=120.0)
    history = learned(ceiling=1000.0, last_sample=last_sample)
    decision = decide(observation, targets(max_replicas=16, max_gpus=16), steady(1), history, NOW)
    # (2.5 + 12) req/s x 400 tok + 120 x 400 tok / 60 s = 6600 tok/s at 80% of 1000 -> 9; without the
    # last evaluation's count only 1000 + 800 tok/s -> 3.
    assert decision.replicas == expected, decision.reason
    assert decision.history.last_sample == GaugeSample(NOW, 120.0, 4.0)


def test_requests_filling_the_batch_slots_scale_up_before_any_capacity_is_learned() -> None:
    # Two replicas of 64 slots with 127 requests running, no queue yet, nothing learned.
    burst = serving(1000.0, replicas=2, running_requests=127.0, running_requests_average=30.0)
    decision = decide(burst, targets(batch_slots=64), steady(2), ScalingHistory(), NOW)
    assert decision.replicas == 3, decision.reason
    assert "127 requests in flight need 3 replica(s) at 70% of 64 batch slots each" in decision.reason
    assert decide(burst, targets(), steady(2), ScalingHistory(), NOW).replicas == 2  # slots unknown


def test_waiting_requests_count_for_the_slots_only_until_a_capacity_is_learned() -> None:
    # One replica, every slot taken, 500 requests waiting: before anything is learned the queue says
    # "more" (up to one batch); afterwards the token rule sizes it by its growth, and a backlog stuck
    # on one replica no longer keeps adding replicas that cannot take it over.
    backlog = signals(running_requests=64.0, waiting_requests=500.0)
    assert in_flight(backlog, 64, None) == 128.0
    assert in_flight(backlog, 64, 8000.0) == 64.0


def test_a_scale_up_the_bounds_cap_says_so() -> None:
    # 8807 tok/s, most of it the queue's growth, wants 12 replicas at 80% of 1000; maxGpus 6 at 2 GPUs per
    # replica allows 3.
    observation = serving(800.0, waiting_requests=1.0, waiting_growth_per_second=20.0)
    decision = decide(
        observation, targets(gpus_per_replica=2, max_gpus=6), steady(1), learned(ceiling=1000.0), NOW
    )
    assert decision.replicas == 3, decision.reason
    assert "needs 12 replica(s)" in decision.reason and decision.reason.endswith(", but the bound is 3")
    uncapped = decide(
        observation, targets(max_replicas=16, max_gpus=16), steady(1), learned(ceiling=1000.0), NOW
    )
    assert uncapped.replicas == 12 and "the bound" not in uncapped.reason, uncapped.reason
