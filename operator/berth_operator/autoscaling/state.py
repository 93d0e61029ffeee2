"""The autoscaler's memory, kept in `status.autoscaling` so that an operator restart (or a second
operator taking over) continues where the last one stopped: the replica count it last set (to tell
a hand edit from its own), when it last scaled (the stabilization window), the per-replica
capacity it has learned, recent recommendations, and a short history of decisions for people.

Everything here is bounded: recommendations older than the longest stabilization window are
dropped, and at most `DECISION_HISTORY_LIMIT` decisions are kept. Times are epoch seconds in
memory and RFC 3339 strings in status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

DECISION_HISTORY_LIMIT = 10
"""Decisions kept in status (newest last)."""

RECOMMENDATION_LIMIT = 120
"""Recommendations kept at most, whatever the window (a 600 s window at a 5 s interval)."""


@dataclass(frozen=True)
class DecisionRecord:
    """One change the autoscaler made (or, in dry run, would have made)."""

    time: float
    from_replicas: int
    to_replicas: int
    reason: str


@dataclass(frozen=True)
class Recommendation:
    """What one evaluation thought was needed: `scale_up` by the scale-up rule, `scale_down` the
    fewest replicas whose survivors keep the SLO with headroom."""

    time: float
    scale_up: int
    scale_down: int


@dataclass(frozen=True)
class ScalingHistory:
    """The state one decision hands to the next. Empty for a resource never scaled before."""

    last_applied_replicas: int | None = None
    last_scale_time: float | None = None
    breach_since: float | None = None
    capacity_ceiling: float | None = None
    """Token work per second one replica sustains at saturation (learned from SLO breaches)."""
    capacity_floor: float | None = None
    """Most token work per second one replica has served while every SLO held."""
    recommendations: tuple[Recommendation, ...] = ()
    decisions: tuple[DecisionRecord, ...] = ()

    def pruned(self, now: float, window_seconds: float) -> ScalingHistory:
        """Drop recommendations older than the window, but keep the newest of those: it shows the
        window has been observed from its start."""
        older = [r for r in self.recommendations if now - r.time > window_seconds]
        within = [r for r in self.recommendations if now - r.time <= window_seconds]
        kept = (*older[-1:], *within)
        return replace(self, recommendations=kept[-RECOMMENDATION_LIMIT:])

    def with_recommendation(self, recommendation: Recommendation) -> ScalingHistory:
        kept = (*self.recommendations, recommendation)[-RECOMMENDATION_LIMIT:]
        return replace(self, recommendations=kept)

    def with_decision(self, record: DecisionRecord) -> ScalingHistory:
        return replace(self, decisions=(*self.decisions, record)[-DECISION_HISTORY_LIMIT:])

    def to_status(self) -> dict[str, Any]:
        """The camelCase form stored under `status.autoscaling.state` and `.history`."""
        state: dict[str, Any] = {
            "lastAppliedReplicas": self.last_applied_replicas,
            "lastScaleTime": _format_time(self.last_scale_time),
            "breachSince": _format_time(self.breach_since),
            "capacityCeilingTokensPerSecond": _round(self.capacity_ceiling),
            "capacityFloorTokensPerSecond": _round(self.capacity_floor),
            "recommendations": [
                {"time": _format_time(r.time), "scaleUp": r.scale_up, "scaleDown": r.scale_down}
                for r in self.recommendations
            ],
        }
        return {
            "state": {key: value for key, value in state.items() if value is not None},
            "history": [decision_to_status(d) for d in self.decisions],
        }

    @classmethod
    def from_status(cls, autoscaling_status: Mapping[str, Any] | None) -> ScalingHistory:
        """Read back what `to_status` wrote. Entries that do not parse are dropped, not fatal: a
        hand-edited or older status must never stop the autoscaler."""
        if not autoscaling_status:
            return cls()
        state = autoscaling_status.get("state") or {}
        recommendations = []
        for entry in state.get("recommendations") or ():
            time = _parse_time(entry.get("time"))
            up, down = _int_or_none(entry.get("scaleUp")), _int_or_none(entry.get("scaleDown"))
            if time is not None and up is not None and down is not None:
                recommendations.append(Recommendation(time, up, down))
        decisions = []
        for entry in autoscaling_status.get("history") or ():
            time = _parse_time(entry.get("time"))
            before, after = _int_or_none(entry.get("from")), _int_or_none(entry.get("to"))
            if time is not None and before is not None and after is not None:
                decisions.append(DecisionRecord(time, before, after, str(entry.get("reason", ""))))
        return cls(
            last_applied_replicas=_int_or_none(state.get("lastAppliedReplicas")),
            last_scale_time=_parse_time(state.get("lastScaleTime")),
            breach_since=_parse_time(state.get("breachSince")),
            capacity_ceiling=_positive_or_none(state.get("capacityCeilingTokensPerSecond")),
            capacity_floor=_positive_or_none(state.get("capacityFloorTokensPerSecond")),
            recommendations=tuple(recommendations)[-RECOMMENDATION_LIMIT:],
            decisions=tuple(decisions)[-DECISION_HISTORY_LIMIT:],
        )


def decision_to_status(record: DecisionRecord) -> dict[str, Any]:
    return {
        "time": _format_time(record.time),
        "from": record.from_replicas,
        "to": record.to_replicas,
        "reason": record.reason,
    }


def _format_time(epoch_seconds: float | None) -> str | None:
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _positive_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
