"""The autoscaling policy, rule by rule: table-driven single decisions, then sequences of decisions
over (simulated) time for the rules that need history — stabilization, flapping, hand edits."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from autoscaling_factories import learned, signals, targets

from berth_operator.autoscaling.policy import Action, Decision, ReplicaCounts, Targets, decide
from berth_operator.autoscaling.signals import MetricsUnavailable, Observation
from berth_operator.autoscaling.state import DECISION_HISTORY_LIMIT, ScalingHistory

NOW = 1_800_000_000.0


def steady(replicas: int) -> ReplicaCounts:
    return ReplicaCounts(desired=replicas, ready=replicas)


@pytest.mark.parametrize(
    ("observation", "spec", "current", "history", "expected"),
    [
        pytest.param(
            signals(
                generation_tokens_per_second=1600.0,
                requests_per_second=4.0,
                waiting_growth_per_second=6.0,
                reporting_replicas=2,
                serving_replicas_average=2.0,
            ),
            targets(),
            steady(2),
            learned(ceiling=1000.0),
            5,  # (4 served + 6 queueing) req/s x 400 tok = 4000 tok/s, at 80% of 1000 tok/s each
            id="scales up at once to what token demand needs, not +1",
        ),
        pytest.param(
            signals(
                generation_tokens_per_second=800.0,
                requests_per_second=2.0,
                waiting_requests=60.0,
                ttft_p95_seconds=2.0,
            ),
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
            signals(
                ttft_p95_seconds=0.9,
                waiting_requests=5.0,
                generation_tokens_per_second=1200.0,
                requests_per_second=3.0,
                reporting_replicas=2,
                serving_replicas_average=2.0,
            ),
            targets(),
            ReplicaCounts(desired=4, ready=2),
            learned(ceiling=1000.0),
            4,  # 1233 tok/s needs 2 at 80% of 800 (learned): the 2 starting already cover it
            id="replicas still starting are capacity on its way: the same breach adds nothing",
        ),
        pytest.param(
            signals(
                ttft_p95_seconds=0.9,
                waiting_requests=5.0,
                generation_tokens_per_second=1200.0,
                requests_per_second=3.0,
                waiting_growth_per_second=5.0,
                reporting_replicas=2,
                serving_replicas_average=2.0,
            ),
            targets(),
            ReplicaCounts(desired=4, ready=2),
            learned(ceiling=1000.0),
            6,  # (3 + 5) req/s x 400 + 5 x 400 / 60 s = 3233 tok/s at 80% of 800 (learned) -> 6
            id="demand beyond the starting replicas' capacity scales up further while they start",
        ),
        pytest.param(
            signals(
                generation_tokens_per_second=800.0, requests_per_second=2.0, waiting_growth_per_second=20.0
            ),
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
            waiting_growth_per_second=6.0,
        )
        return decide(observation, targets(), steady(1), learned(ceiling=6000.0), NOW).replicas

    assert needed(50.0) == 1  # 10 req/s x (200 + 7.5) tok = 2075 tok/s <= 80% of 6000
    assert needed(8000.0) == 3  # 10 req/s x (200 + 1200) tok = 14000 tok/s at 80% of 6000


def test_reason_carries_the_numbers() -> None:
    decision = decide(
        signals(
            ttft_p95_seconds=0.64,
            waiting_requests=10.0,
            generation_tokens_per_second=1000.0,
            requests_per_second=2.5,
            waiting_growth_per_second=5.0,
        ),
        targets(),
        steady(1),
        learned(ceiling=1000.0),
        NOW,
    )
    assert decision.replicas > 1
    assert "TTFT p95 640ms > 500ms" in decision.reason
    assert "tok/s" in decision.reason
    assert decision.reason.startswith(f"scaled 1 -> {decision.replicas}:")
    assert decision.slo_met is False
    record = decision.history.decisions[-1]
    assert (record.time, record.from_replicas, record.to_replicas) == (NOW, 1, decision.replicas)


def test_missing_metrics_are_reported_and_do_not_learn() -> None:
    history = learned(ceiling=1000.0, last_applied_replicas=3)
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


REQUEST_TOKENS = 400.0  # generated tokens per request in the sequences below


def saturating(load: float, replicas: int, capacity: float = 1000.0) -> Observation:
    """Signals of `replicas` replicas of `capacity` tok/s offered `load` tok/s: what they cannot
    serve queues up, and TTFT breaches while it does."""
    served = min(load, replicas * capacity)
    excess = load - served
    return signals(
        generation_tokens_per_second=served,
        requests_per_second=served / REQUEST_TOKENS,
        waiting_growth_per_second=excess / REQUEST_TOKENS,
        reporting_replicas=replicas,
        serving_replicas_average=float(replicas),
        ttft_p95_seconds=(2.0 if excess else 0.2) if load else None,
    )


def run(
    spec: Targets, loads: list[float], start_replicas: int, history: ScalingHistory, interval: float = 10.0
) -> tuple[list[int], list[Decision]]:
    """One decision per interval for offered `loads` (tok/s), applied as the operator would, with
    replicas Ready at once. Returns the replica count after each decision, and the decisions."""
    replicas, counts, decisions = start_replicas, [], []
    for step, load in enumerate(loads):
        decision = decide(saturating(load, replicas), spec, steady(replicas), history, NOW + step * interval)
        history = decision.history
        if decision.apply:
            replicas = decision.replicas
        counts.append(replicas)
        decisions.append(decision)
    return counts, decisions


def test_scale_down_waits_for_the_stabilization_window() -> None:
    counts, decisions = run(targets(), [1200.0] * 40, 4, learned(ceiling=1000.0, last_applied_replicas=4))
    # 1200 tok/s over 2 survivors is 600 each (<= 60% of 1000): allowed, but only after 300 s observed.
    assert counts[:30] == [4] * 30
    assert counts[30:] == [2] * 10
    assert "1200 tok/s over 2 survivor(s) = 600 tok/s each <= 60% of 1000 tok/s" in decisions[30].reason


def test_survivor_check_keeps_replicas_whose_removal_would_overload_the_rest() -> None:
    # 1100 tok/s on 2 replicas: one survivor would carry 1100 > 60% of 1000, so 2 stay for good.
    counts, _ = run(targets(), [1100.0] * 100, 2, learned(ceiling=1000.0, last_applied_replicas=2))
    assert set(counts) == {2}


def test_load_oscillating_around_one_replica_does_not_flap_two_one() -> None:
    # Load swinging around one replica's planned capacity (800 tok/s), slower than the stabilization
    # window: up to 2 once, and never back to 1, since 700 tok/s on one survivor is above 60% of 1000.
    loads = ([900.0] * 40 + [700.0] * 40) * 3
    counts, _ = run(targets(), loads, 1, learned(ceiling=1000.0, last_applied_replicas=1))
    trajectory = [1, *counts]
    changes = [after for before, after in itertools.pairwise(trajectory) if before != after]
    assert changes == [2]


def test_zero_load_scales_to_min_after_the_window() -> None:
    counts, _ = run(targets(min_replicas=1), [0.0] * 40, 3, learned(ceiling=1000.0, last_applied_replicas=3))
    assert counts[-1] == 1
    assert counts[:30] == [3] * 30


def test_scale_up_stabilization_takes_the_lowest_recommendation_of_its_window() -> None:
    spec = targets(scale_up_stabilization_seconds=30.0)
    counts, _ = run(spec, [300.0] * 5 + [3000.0] * 6, 1, learned(ceiling=1000.0, last_applied_replicas=1))
    assert counts[5:8] == [1, 1, 1]  # the 30 s window still holds the low recommendations
    assert counts[8] == 4  # 3000 tok/s at 80% of 1000 each


def test_hand_edit_up_is_kept_for_one_window_then_scaled_down() -> None:
    history = learned(ceiling=1000.0, last_applied_replicas=2)
    first = decide(signals(), targets(), steady(6), history, NOW)
    assert first.manual_change is not None
    assert "changed by hand from 2 to 6" in first.manual_change
    assert first.replicas == 6 and not first.apply
    assert first.history.last_applied_replicas == 6
    counts, _ = run(targets(), [500.0] * 40, 6, first.history)
    assert counts[:29] == [6] * 29
    assert counts[-1] == 1


def test_hand_edit_below_the_need_is_corrected_at_once() -> None:
    history = learned(ceiling=1000.0, last_applied_replicas=4)
    decision = decide(
        signals(generation_tokens_per_second=1000.0, requests_per_second=2.5, waiting_growth_per_second=5.0),
        targets(),
        steady(1),
        history,
        NOW,
    )
    assert decision.manual_change is not None
    assert decision.replicas == 4
    assert decision.apply


def test_dry_run_decides_and_reports_but_never_applies_or_claims_replicas() -> None:
    spec = targets(dry_run=True)
    history = learned(ceiling=1000.0, last_applied_replicas=7)
    decision = decide(
        signals(
            generation_tokens_per_second=1600.0,
            requests_per_second=4.0,
            waiting_growth_per_second=6.0,
            reporting_replicas=2,
            serving_replicas_average=2.0,
        ),
        spec,
        steady(2),
        history,
        NOW,
    )
    assert decision.replicas == 5
    assert decision.action is Action.SCALE_UP
    assert decision.apply is False
    assert decision.manual_change is None  # in dry run the replicas are not the autoscaler's
    assert decision.reason.startswith("dry run: would scale 2 -> 5:")
    assert decision.history.last_applied_replicas == 2
    assert decision.history.last_scale_time is None


def test_decision_history_is_bounded() -> None:
    history = learned(ceiling=1000.0)
    replicas = 1
    for step in range(DECISION_HISTORY_LIMIT + 5):
        load = 3000.0 if step % 2 == 0 else 0.0
        decision = decide(
            signals(generation_tokens_per_second=load, requests_per_second=load / 400),
            targets(scale_down_stabilization_seconds=0.0),
            steady(replicas),
            history,
            NOW + step * 10,
        )
        history, replicas = decision.history, decision.replicas
    assert len(history.decisions) == DECISION_HISTORY_LIMIT
    assert history.decisions[-1].time == NOW + (DECISION_HISTORY_LIMIT + 4) * 10


def test_recommendations_stay_within_the_window() -> None:
    _, decisions = run(targets(), [500.0] * 200, 1, learned(ceiling=1000.0, last_applied_replicas=1))
    kept = decisions[-1].history.recommendations
    assert len(kept) <= 300 / 10 + 2
    assert kept[-1].time - kept[0].time <= 310


def test_capacity_is_learned_from_a_saturated_breach() -> None:
    decision = decide(
        signals(
            ttft_p95_seconds=1.5,
            waiting_requests=20.0,
            generation_tokens_per_second=1800.0,
            requests_per_second=4.5,
            reporting_replicas=2,
            serving_replicas_average=2.0,
        ),
        targets(),
        steady(2),
        ScalingHistory(last_applied_replicas=2),
        NOW,
    )
    assert decision.history.capacity_ceiling == pytest.approx(900.0)
    # 1800 tok/s arriving + 20 x 400 tok queued / 60 s = 1933 tok/s, at 80% of 900 each -> 3
    assert decision.replicas == 3


def test_breach_since_is_remembered_and_cleared() -> None:
    breached = signals(ttft_p95_seconds=0.9)
    first = decide(breached, targets(), ReplicaCounts(2, 1), learned(), NOW)
    second = decide(breached, targets(), ReplicaCounts(2, 1), first.history, NOW + 30)
    assert second.history.breach_since == NOW
    assert "breached for 30s" in second.reason
    cleared = decide(signals(), targets(), steady(2), second.history, NOW + 40)
    assert cleared.history.breach_since is None


def test_targets_bounds_without_a_gpu_budget() -> None:
    assert replace(targets(), max_gpus=None).bounds() == (1, 8)


@pytest.mark.parametrize(("breached_for", "expected"), [(10.0, 2), (40.0, 3)])
def test_a_queueing_breach_the_model_cannot_explain_adds_one_after_a_while(
    breached_for: float, expected: int
) -> None:
    # The learned capacity says 2 replicas are plenty, yet requests queue and TTFT is over target.
    observation = signals(
        ttft_p95_seconds=0.9,
        waiting_requests=5.0,
        generation_tokens_per_second=300.0,
        requests_per_second=0.75,
        reporting_replicas=2,
        serving_replicas_average=2.0,
    )
    history = learned(ceiling=1000.0, last_applied_replicas=2, breach_since=NOW - breached_for)
    decision = decide(observation, targets(), steady(2), history, NOW)
    assert decision.replicas == expected, decision.reason


@pytest.mark.parametrize(("last_waiting", "expected"), [(None, 3), ((NOW - 10, 0.0), 9)])
def test_a_queue_that_grew_since_the_last_evaluation_sizes_the_scale_up(
    last_waiting: tuple[float, float] | None, expected: int
) -> None:
    # 120 requests queued in the last 10 s, while the 60 s window's growth is still flat.
    observation = signals(
        ttft_p95_seconds=2.0,
        waiting_requests=120.0,
        generation_tokens_per_second=1000.0,
        requests_per_second=2.5,
    )
    history = learned(ceiling=1000.0, last_applied_replicas=1, last_waiting=last_waiting)
    decision = decide(observation, targets(max_replicas=16, max_gpus=16), steady(1), history, NOW)
    # (2.5 + 12) req/s x 400 tok + 120 x 400 tok / 60 s = 6600 tok/s at 80% of 1000 -> 9; without the
    # last evaluation's count only 1000 + 800 tok/s -> 3.
    assert decision.replicas == expected, decision.reason
    assert decision.history.last_waiting == (NOW, 120.0)


@pytest.mark.parametrize(("seconds_since_change", "hand_edit"), [(5.0, False), (60.0, True)])
def test_a_deployment_not_yet_at_the_last_decision_is_not_mistaken_for_a_hand_edit(
    seconds_since_change: float, hand_edit: bool
) -> None:
    first = decide(
        signals(generation_tokens_per_second=1000.0, requests_per_second=2.5, waiting_growth_per_second=5.0),
        targets(),
        steady(1),
        learned(ceiling=1000.0, last_applied_replicas=1),
        NOW,
    )
    assert first.replicas == 4 and first.apply
    # The operator has not applied 4 to the Deployment yet: it still says 1.
    later = decide(signals(), targets(), steady(1), first.history, NOW + seconds_since_change)
    assert (later.manual_change is not None) == hand_edit
    assert later.replicas == (1 if hand_edit else 4)
