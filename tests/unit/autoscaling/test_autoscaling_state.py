"""The autoscaler's history survives a trip through status (an operator restart) and stays bounded."""

from __future__ import annotations

from typing import Any

from autoscaling_factories import signals, targets

from berth_operator.autoscaling.policy import ReplicaCounts, decide
from berth_operator.autoscaling.state import (
    DECISION_HISTORY_LIMIT,
    RECOMMENDATION_LIMIT,
    DecisionRecord,
    Recommendation,
    ScalingHistory,
)

NOW = 1_800_000_040.0  # 2027-01-15T08:00:40Z


def test_round_trip_through_status_keeps_everything() -> None:
    history = ScalingHistory(
        last_applied_replicas=3,
        last_scale_time=NOW - 40,
        breach_since=NOW - 20,
        capacity_ceiling=1234.5,
        capacity_floor=800.0,
        recommendations=(Recommendation(NOW - 10, 3, 4), Recommendation(NOW, 3, 3)),
        decisions=(DecisionRecord(NOW - 40, 2, 3, "scaled 2 -> 3: TTFT p95 640ms > 500ms"),),
    )
    status = history.to_status()
    assert status["state"]["lastAppliedReplicas"] == 3
    assert status["state"]["capacityCeilingTokensPerSecond"] == 1234.5
    assert status["history"] == [
        {
            "time": "2027-01-15T08:00:00Z",
            "from": 2,
            "to": 3,
            "reason": "scaled 2 -> 3: TTFT p95 640ms > 500ms",
        }
    ]
    assert ScalingHistory.from_status(status) == history


def test_times_are_rfc3339_utc() -> None:
    status = ScalingHistory(last_scale_time=0.0).to_status()
    assert status["state"]["lastScaleTime"] == "1970-01-01T00:00:00Z"


def test_empty_or_missing_status_is_a_fresh_history() -> None:
    assert ScalingHistory.from_status(None) == ScalingHistory()
    assert ScalingHistory.from_status({}) == ScalingHistory()


def test_unparseable_entries_are_dropped_not_fatal() -> None:
    status: dict[str, Any] = {
        "state": {
            "lastAppliedReplicas": "three",
            "lastScaleTime": "yesterday",
            "capacityCeilingTokensPerSecond": -5,
            "recommendations": [{"time": "1970-01-01T00:00:10Z", "scaleUp": 2, "scaleDown": 1}, {"time": 5}],
        },
        "history": [{"time": "1970-01-01T00:00:10Z", "from": 1, "to": 2, "reason": "x"}, {"from": True}],
    }
    history = ScalingHistory.from_status(status)
    assert history.last_applied_replicas is None
    assert history.last_scale_time is None
    assert history.capacity_ceiling is None
    assert history.recommendations == (Recommendation(10.0, 2, 1),)
    assert history.decisions == (DecisionRecord(10.0, 1, 2, "x"),)


def test_bounds_hold_when_reading_an_oversized_status() -> None:
    status = {
        "state": {
            "recommendations": [
                {"time": f"1970-01-01T00:{minute:02d}:{second:02d}Z", "scaleUp": 1, "scaleDown": 1}
                for minute in range(5)
                for second in range(60)
            ]
        },
        "history": [
            {"time": "1970-01-01T00:00:10Z", "from": 1, "to": 2, "reason": str(n)} for n in range(50)
        ],
    }
    history = ScalingHistory.from_status(status)
    assert len(history.recommendations) == RECOMMENDATION_LIMIT
    assert len(history.decisions) == DECISION_HISTORY_LIMIT
    assert history.decisions[-1].reason == "49"


def test_a_restarted_operator_keeps_the_stabilization_window() -> None:
    """Scale up, 'restart' (history only through status), then light load: no scale-down before the
    window has passed since the scale-up, because lastScaleTime came back from status."""
    spec = targets()
    up = decide(
        signals(generation_tokens_per_second=1000.0, requests_per_second=2.5, waiting_growth_per_second=5.0),
        spec,
        ReplicaCounts(1, 1),
        ScalingHistory(capacity_ceiling=1000.0),
        NOW,
    )
    assert up.replicas == 4
    restored = ScalingHistory.from_status(up.history.to_status())
    early = decide(signals(), spec, ReplicaCounts(4, 4), restored, NOW + 100)
    assert early.replicas == 4
    assert early.manual_change is None  # the restored lastAppliedReplicas matches the Deployment
    history, replicas, scaled_down_at = early.history, 4, None
    for step in range(1, 30):
        now = NOW + 100 + step * 10
        late = decide(signals(), spec, ReplicaCounts(replicas, replicas), history, now)
        history, replicas = late.history, late.replicas
        if replicas < 4 and scaled_down_at is None:
            scaled_down_at = now
    assert replicas == 1
    assert scaled_down_at == NOW + 310  # the first evaluation after the 300 s window
