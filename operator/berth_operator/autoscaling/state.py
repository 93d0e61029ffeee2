"""The autoscaler's memory, kept in `status.autoscaling` so that an operator restart (or a second
operator taking over) continues where the last one stopped. Where it lives in status:

- when it last scaled up (no scale-in within a stabilization window of it): the newest non-dry-run
  entry of `history` that added replicas;
- since when an SLO has been breached: the `SLOMet` condition's `lastTransitionTime`;
- the per-replica capacity it learned: `capacity`;
- recent recommendations (the windows' contents), each with the request rate it saw (the points the
  demand's trend is fitted to): `recommendations`;
- the instantaneous gauges of the last evaluation with metrics (for the queue's growth and the
  short-term trend of the requests in flight since): `signals` and `lastEvaluationTime`, which the
  status carries anyway -- absent after an evaluation without metrics, so a gap is never taken
  for a trend;
- a short history of decisions for people: `history` and `lastDecision`.

Everything is bounded: recommendations outside the longest stabilization window are dropped and,
past `RECOMMENDATION_LIMIT`, the oldest are merged pairwise (keeping the higher scale-down and the
lower scale-up, which only ever makes the windows more cautious); at most
`DECISION_HISTORY_LIMIT` decisions are kept. Times are epoch seconds here, RFC 3339 in status.

The replica count itself is not here: a decision that applies is recorded as the operator's
`status.desiredReplicas`, the one count the Deployment is built from, which the next evaluation
starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from berth_operator.api.status import (
    CONDITION_SLO_MET,
    AutoscalingStatus,
    InferenceDeploymentStatus,
    LearnedCapacity,
    ScalingDecision,
    ScalingRecommendation,
)

DECISION_HISTORY_LIMIT = 10
"""Decisions kept in status (newest last)."""

RECOMMENDATION_LIMIT = 120
"""Recommendations kept at most (status.autoscaling.recommendations has the same bound)."""

REASON_LIMIT = 1024
"""Longest decision reason status accepts."""


@dataclass(frozen=True)
class DecisionRecord:
    """One change the autoscaler made (or, in dry run, would have made)."""

    time: float
    from_replicas: int
    to_replicas: int
    reason: str
    dry_run: bool = False


@dataclass(frozen=True)
class Recommendation:
    """What one evaluation thought was needed: `scale_up` by the scale-up rule, `scale_down` the
    fewest replicas whose survivors keep the SLO with headroom."""

    time: float
    scale_up: int
    scale_down: int
    requests_per_second: float | None = None
    """The windowed request rate this evaluation saw; None where it had none (older status)."""


@dataclass(frozen=True)
class GaugeSample:
    """The requests waiting and running at one evaluation (the gauges, not their window averages)."""

    time: float
    waiting_requests: float
    running_requests: float


@dataclass(frozen=True)
class ScalingHistory:
    """The state one decision hands to the next. Empty for a resource never scaled before."""

    last_scale_up_time: float | None = None
    breach_since: float | None = None
    capacity_ceiling: float | None = None
    """Token work per second one replica sustains at saturation (learned from SLO breaches)."""
    capacity_floor: float | None = None
    """Most token work per second one replica has served while every SLO held."""
    recommendations: tuple[Recommendation, ...] = ()
    decisions: tuple[DecisionRecord, ...] = ()
    last_sample: GaugeSample | None = None
    """The gauges of the last evaluation, if it had metrics: the queue's growth and the trend of
    the requests in flight since then are the shortest window the policy sees."""

    def pruned(self, now: float, window_seconds: float) -> ScalingHistory:
        """Drop recommendations older than the window, but keep the newest of those: it shows the
        window has been observed from its start."""
        older = [r for r in self.recommendations if now - r.time > window_seconds]
        within = [r for r in self.recommendations if now - r.time <= window_seconds]
        return replace(self, recommendations=_compact((*older[-1:], *within)))

    def with_recommendation(self, recommendation: Recommendation) -> ScalingHistory:
        return replace(self, recommendations=_compact((*self.recommendations, recommendation)))

    def with_decision(self, record: DecisionRecord) -> ScalingHistory:
        return replace(self, decisions=(*self.decisions, record)[-DECISION_HISTORY_LIMIT:])


def _compact(recommendations: tuple[Recommendation, ...]) -> tuple[Recommendation, ...]:
    """At most RECOMMENDATION_LIMIT entries: merge the oldest pairwise, keeping the older time."""
    while len(recommendations) > RECOMMENDATION_LIMIT:
        excess = len(recommendations) - RECOMMENDATION_LIMIT
        merged = [
            Recommendation(
                first.time,
                min(first.scale_up, second.scale_up),
                max(first.scale_down, second.scale_down),
                first.requests_per_second,
            )
            for first, second in zip(
                recommendations[0 : 2 * excess : 2], recommendations[1 : 2 * excess : 2], strict=True
            )
        ]
        recommendations = (*merged, *recommendations[2 * excess :])
    return recommendations


def history_from_status(status: InferenceDeploymentStatus) -> ScalingHistory:
    """The history an earlier evaluation left in status (empty for a resource never evaluated)."""
    autoscaling = status.autoscaling
    if autoscaling is None:
        return ScalingHistory()
    decisions = tuple(
        DecisionRecord(d.time.timestamp(), d.from_replicas, d.to_replicas, d.reason, bool(d.dry_run))
        for d in autoscaling.history
    )[-DECISION_HISTORY_LIMIT:]
    added = [d.time for d in decisions if not d.dry_run and d.to_replicas > d.from_replicas]
    slo_met = status.condition(CONDITION_SLO_MET)
    capacity = autoscaling.capacity
    return ScalingHistory(
        last_scale_up_time=max(added) if added else None,
        breach_since=(
            slo_met.last_transition_time.timestamp()
            if slo_met is not None and slo_met.status == "False"
            else None
        ),
        capacity_ceiling=capacity.ceiling_tokens_per_second if capacity else None,
        capacity_floor=capacity.floor_tokens_per_second if capacity else None,
        recommendations=_compact(
            tuple(
                Recommendation(r.time.timestamp(), r.scale_up, r.scale_down, r.requests_per_second)
                for r in autoscaling.recommendations
            )
        ),
        decisions=decisions,
        last_sample=_gauge_sample(autoscaling),
    )


def _gauge_sample(autoscaling: AutoscalingStatus) -> GaugeSample | None:
    """The last evaluation's gauges, from the signals it reported (absent: it had no metrics)."""
    signals, evaluated = autoscaling.signals, autoscaling.last_evaluation_time
    if signals is None or evaluated is None:
        return None
    if signals.waiting_requests is None or signals.running_requests is None:
        return None
    return GaugeSample(evaluated.timestamp(), signals.waiting_requests, signals.running_requests)


def history_to_status(history: ScalingHistory) -> AutoscalingStatus:
    """The status fields that carry `history`; the caller adds the signals and the evaluation time,
    which carry `last_sample` (as this evaluation's observation)."""
    decisions = [decision_to_status(d) for d in history.decisions]
    return AutoscalingStatus(
        last_decision=decisions[-1] if decisions else None,
        history=decisions,
        capacity=(
            LearnedCapacity(
                ceiling_tokens_per_second=_round(history.capacity_ceiling),
                floor_tokens_per_second=_round(history.capacity_floor),
            )
            if history.capacity_ceiling is not None or history.capacity_floor is not None
            else None
        ),
        recommendations=[
            ScalingRecommendation(
                time=to_datetime(r.time),
                scale_up=r.scale_up,
                scale_down=r.scale_down,
                requests_per_second=_round(r.requests_per_second),
            )
            for r in history.recommendations
        ],
    )


def decision_to_status(record: DecisionRecord) -> ScalingDecision:
    reason = record.reason if len(record.reason) <= REASON_LIMIT else record.reason[: REASON_LIMIT - 1] + "…"
    return ScalingDecision.model_validate(
        {
            "time": to_datetime(record.time),
            "from": record.from_replicas,
            "to": record.to_replicas,
            "reason": reason,
            "dryRun": True if record.dry_run else None,
        }
    )


def to_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(round(epoch_seconds), UTC)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
