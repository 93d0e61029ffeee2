"""The autoscaler's history survives a trip through status (an operator restart) and stays bounded."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from autoscaling_factories import SLO, signals, steady, targets

from berth_operator.api import InferenceDeploymentStatus
from berth_operator.autoscaling.policy import ReplicaCounts, decide
from berth_operator.autoscaling.report import autoscaler_status
from berth_operator.autoscaling.signals import MetricsUnavailable
from berth_operator.autoscaling.state import (
    DECISION_HISTORY_LIMIT,
    RECOMMENDATION_LIMIT,
    DecisionRecord,
    GaugeSample,
    Recommendation,
    ScalingHistory,
    history_from_status,
    history_to_status,
)

NOW = 1_800_000_040.0  # 2027-01-15T08:00:40Z
WHEN = datetime.fromtimestamp(NOW, UTC)
STATUS = InferenceDeploymentStatus()


def through_status(history: ScalingHistory, extra: dict[str, object] | None = None) -> ScalingHistory:
    """Write `history` as the autoscaler would, read it back as the next evaluation would."""
    wire = {"autoscaling": history_to_status(history).to_wire(), **(extra or {})}
    return history_from_status(InferenceDeploymentStatus.model_validate(wire))


def test_round_trip_through_status_keeps_what_the_policy_needs() -> None:
    history = ScalingHistory(
        last_scale_up_time=NOW - 40,
        capacity_ceiling=1234.5,
        capacity_floor=800.0,
        recommendations=(Recommendation(NOW - 10, 3, 4, 12.5), Recommendation(NOW, 3, 3)),
        decisions=(
            DecisionRecord(NOW - 100, 3, 5, "dry run: would scale 3 -> 5: x", dry_run=True),
            DecisionRecord(NOW - 40, 2, 3, "scaled 2 -> 3: TTFT p95 640ms > 500ms"),
        ),
    )
    assert through_status(history) == history


def test_wire_form_is_what_the_crd_describes() -> None:
    history = ScalingHistory(
        capacity_ceiling=1234.5,
        recommendations=(Recommendation(NOW, 3, 4),),
        decisions=(DecisionRecord(NOW, 2, 3, "scaled 2 -> 3: TTFT p95 640ms > 500ms"),),
    )
    wire = history_to_status(history).to_wire()
    decision = {
        "time": "2027-01-15T08:00:40Z",
        "from": 2,
        "to": 3,
        "reason": "scaled 2 -> 3: TTFT p95 640ms > 500ms",
    }
    assert wire == {
        "lastDecision": decision,
        "history": [decision],
        "capacity": {"ceilingTokensPerSecond": 1234.5},
        "recommendations": [{"time": "2027-01-15T08:00:40Z", "scaleUp": 3, "scaleDown": 4}],
    }
    rated = replace(history, recommendations=(Recommendation(NOW, 3, 4, 12.3456),))
    assert history_to_status(rated).to_wire()["recommendations"] == [
        {"time": "2027-01-15T08:00:40Z", "scaleUp": 3, "scaleDown": 4, "requestsPerSecond": 12.346}
    ]


def test_last_scale_up_time_ignores_dry_run_decisions_and_scale_ins() -> None:
    history = ScalingHistory(
        decisions=(
            DecisionRecord(NOW - 500, 1, 2, "scaled 1 -> 2"),
            DecisionRecord(NOW - 100, 2, 1, "scaled 2 -> 1"),
            DecisionRecord(NOW - 10, 1, 4, "dry run: would scale 1 -> 4", dry_run=True),
        )
    )
    assert through_status(history).last_scale_up_time == NOW - 500


def test_the_last_evaluation_s_gauges_come_back_from_the_signals_it_reported() -> None:
    decision = decide(
        signals(waiting_requests=7.0, running_requests=60.0), targets(), steady(1), ScalingHistory(), NOW
    )
    wire = autoscaler_status(
        decision, signals(waiting_requests=7.0, running_requests=60.0), SLO, STATUS, WHEN
    )
    restored = history_from_status(InferenceDeploymentStatus.model_validate(wire))
    assert restored.last_sample == GaugeSample(NOW, 7.0, 60.0)
    unavailable = MetricsUnavailable("no series")
    held = decide(unavailable, targets(), steady(1), restored, NOW + 10)
    wire = autoscaler_status(held, unavailable, SLO, STATUS, WHEN + timedelta(seconds=10))
    # an evaluation without metrics reports no signals: no trend is taken across the gap
    assert history_from_status(InferenceDeploymentStatus.model_validate(wire)).last_sample is None


def test_breach_start_comes_from_the_slo_met_condition() -> None:
    condition = {
        "type": "SLOMet",
        "status": "False",
        "reason": "TargetsMissed",
        "message": "TTFT p95 640ms > 500ms",
        "lastTransitionTime": "2027-01-15T08:00:00Z",
    }
    assert through_status(ScalingHistory(), {"conditions": [condition]}).breach_since == NOW - 40
    met = {**condition, "status": "True", "reason": "WithinTargets"}
    assert through_status(ScalingHistory(), {"conditions": [met]}).breach_since is None


def test_empty_status_is_a_fresh_history() -> None:
    assert history_from_status(InferenceDeploymentStatus()) == ScalingHistory()


def test_long_reasons_are_cut_to_what_status_accepts() -> None:
    history = ScalingHistory(decisions=(DecisionRecord(NOW, 1, 2, "x" * 5000),))
    assert len(history_to_status(history).history[0].reason) == 1024


def test_recommendations_are_compacted_conservatively_not_dropped() -> None:
    many = tuple(
        Recommendation(NOW + step, 5 if step == 0 else 9, 7 if step == 1 else 2) for step in range(300)
    )
    history = ScalingHistory().pruned(NOW + 300, 1000.0)
    for recommendation in many:
        history = history.with_recommendation(recommendation)
    kept = history.recommendations
    assert len(kept) == RECOMMENDATION_LIMIT
    assert kept[0].time == NOW  # the window's start is still known
    assert max(r.scale_down for r in kept) == 7  # the highest scale-down survives the merging
    assert min(r.scale_up for r in kept) == 5  # and the lowest scale-up
    assert [r.time for r in kept] == sorted(r.time for r in kept)


def test_decision_history_is_bounded_in_status() -> None:
    decisions = tuple(DecisionRecord(NOW + n, 1, 2, str(n)) for n in range(DECISION_HISTORY_LIMIT))
    restored = through_status(ScalingHistory(decisions=decisions))
    assert len(restored.decisions) == DECISION_HISTORY_LIMIT
    assert restored.decisions[-1].reason == str(DECISION_HISTORY_LIMIT - 1)


def test_a_restarted_operator_keeps_the_stabilization_window() -> None:
    """Scale up, 'restart' (history only through status), then light load: no scale-down before the
    window has passed since the scale-up, because the decision's time came back from status."""
    spec = targets()
    up = decide(
        signals(
            generation_tokens_per_second=1000.0,
            requests_per_second=2.5,
            waiting_requests=1.0,
            waiting_growth_per_second=5.0,
        ),
        spec,
        ReplicaCounts(1, 1),
        ScalingHistory(capacity_ceiling=1000.0),
        NOW,
    )
    assert up.replicas == 4
    restored = through_status(up.history)
    assert restored.capacity_ceiling == 1000.0
    history, replicas, scaled_down_at = restored, 4, None
    for step in range(40):
        now = NOW + 10 + step * 10
        decision = decide(signals(), spec, ReplicaCounts(replicas, replicas), history, now)
        history, replicas = through_status(decision.history), decision.replicas
        if replicas < 4 and scaled_down_at is None:
            scaled_down_at = now
    assert replicas == 1
    assert scaled_down_at == NOW + 310  # the first evaluation after the 300 s window


def test_times_in_status_are_utc() -> None:
    wire = history_to_status(ScalingHistory(decisions=(DecisionRecord(0.0, 1, 2, "r"),))).to_wire()
    assert wire["lastDecision"]["time"] == datetime(1970, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")
