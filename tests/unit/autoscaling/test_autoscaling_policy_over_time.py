"""The autoscaling policy over (simulated) time: the rules that need history -- stabilization
windows, the survivor check against flapping, and the bounded history. Single decisions are in
test_autoscaling_policy.py."""

from __future__ import annotations

import itertools

from autoscaling_factories import NOW, REQUEST_TOKENS, learned, serving, signals, steady, targets

from berth_operator.autoscaling.policy import Decision, ReplicaCounts, Targets, decide
from berth_operator.autoscaling.signals import Observation
from berth_operator.autoscaling.state import DECISION_HISTORY_LIMIT, ScalingHistory


def saturating(load: float, replicas: int, queued: float, capacity: float = 1000.0) -> Observation:
    """Signals of `replicas` replicas of `capacity` tok/s offered `load` tok/s with `queued`
    requests waiting: what they cannot serve queues up, and TTFT breaches while it does."""
    served = min(load, replicas * capacity)
    excess = load - served
    return serving(
        served,
        replicas,
        waiting_requests=queued,
        waiting_growth_per_second=excess / REQUEST_TOKENS,
        ttft_p95_seconds=(2.0 if excess else 0.2) if load else None,
    )


def run(
    spec: Targets, loads: list[float], start_replicas: int, history: ScalingHistory, interval: float = 10.0
) -> tuple[list[int], list[Decision]]:
    """One decision per interval for offered `loads` (tok/s), applied as the operator would, with
    replicas Ready at once and the queue growing by what they cannot serve (emptied once they can).
    Returns the replica count after each decision, and the decisions."""
    replicas, counts, decisions, queued = start_replicas, [], [], 0.0
    for step, load in enumerate(loads):
        excess = max(load - replicas * 1000.0, 0.0)
        queued = queued + excess / REQUEST_TOKENS * interval if excess else 0.0
        observation = saturating(load, replicas, queued)
        decision = decide(observation, spec, steady(replicas), history, NOW + step * interval)
        history = decision.history
        if decision.apply:
            replicas = decision.replicas
        counts.append(replicas)
        decisions.append(decision)
    return counts, decisions


def test_scale_down_waits_for_the_stabilization_window() -> None:
    counts, decisions = run(targets(), [1200.0] * 40, 4, learned(ceiling=1000.0))
    # 1200 tok/s over 2 survivors is 600 each (<= 60% of 1000): allowed, but only after 300 s observed.
    assert counts[:30] == [4] * 30
    assert counts[30:] == [2] * 10
    assert "1200 tok/s over 2 survivor(s) = 600 tok/s each <= 60% of 1000 tok/s" in decisions[30].reason


def test_survivor_check_keeps_replicas_whose_removal_would_overload_the_rest() -> None:
    # 1100 tok/s on 2 replicas: one survivor would carry 1100 > 60% of 1000, so 2 stay for good.
    counts, _ = run(targets(), [1100.0] * 100, 2, learned(ceiling=1000.0))
    assert set(counts) == {2}


def test_load_oscillating_around_one_replica_does_not_flap_two_one() -> None:
    # Load swinging around one replica's planned capacity (800 tok/s), slower than the stabilization
    # window: up to 2 once, and never back to 1, since 700 tok/s on one survivor is above 60% of 1000.
    loads = ([900.0] * 40 + [700.0] * 40) * 3
    counts, _ = run(targets(), loads, 1, learned(ceiling=1000.0))
    trajectory = [1, *counts]
    changes = [after for before, after in itertools.pairwise(trajectory) if before != after]
    assert changes == [2]


def test_zero_load_scales_to_min_after_the_window() -> None:
    counts, _ = run(targets(min_replicas=1), [0.0] * 40, 3, learned(ceiling=1000.0))
    assert counts[-1] == 1
    assert counts[:30] == [3] * 30


def test_scale_up_stabilization_takes_the_lowest_recommendation_of_its_window() -> None:
    spec = targets(scale_up_stabilization_seconds=30.0)
    counts, _ = run(spec, [300.0] * 5 + [3000.0] * 6, 1, learned(ceiling=1000.0))
    assert counts[5:8] == [1, 1, 1]  # the 30 s window still holds the low recommendations
    # (1000 served + 2000 queueing) tok/s + the first 10 s's 50 requests queued, over 60 s: 3333 tok/s
    # at 80% of 1000 each, the lowest recommendation of the window once the low ones left it
    assert counts[8] == 5


def test_decision_history_is_bounded() -> None:
    history = learned(ceiling=1000.0)
    replicas = 1
    for step in range(DECISION_HISTORY_LIMIT + 5):
        load = 3000.0 if step % 2 == 0 else 0.0
        spec = targets(scale_down_stabilization_seconds=0.0)
        decision = decide(serving(load), spec, steady(replicas), history, NOW + step * 10)
        history, replicas = decision.history, decision.replicas
    assert len(history.decisions) == DECISION_HISTORY_LIMIT
    assert history.decisions[-1].time == NOW + (DECISION_HISTORY_LIMIT + 4) * 10


def test_recommendations_stay_within_the_window() -> None:
    _, decisions = run(targets(), [500.0] * 200, 1, learned(ceiling=1000.0))
    kept = decisions[-1].history.recommendations
    assert len(kept) <= 300 / 10 + 2
    assert kept[-1].time - kept[0].time <= 310


def test_breach_since_is_remembered_and_cleared() -> None:
    breached = signals(ttft_p95_seconds=0.9)
    first = decide(breached, targets(), ReplicaCounts(2, 1), learned(), NOW)
    second = decide(breached, targets(), ReplicaCounts(2, 1), first.history, NOW + 30)
    assert second.history.breach_since == NOW
    assert "breached for 30s" in second.reason
    cleared = decide(signals(), targets(), steady(2), second.history, NOW + 40)
    assert cleared.history.breach_since is None
