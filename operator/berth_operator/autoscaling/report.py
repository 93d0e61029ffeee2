"""What the autoscaler tells people: its share of the status, the conditions it owns, the Events.

Pure: a decision and what was observed go in, the wire form of `status.autoscaling` plus the
`SLOMet` and `MetricsUnavailable` conditions come out (applied by the handler under the
autoscaler's own field manager), and the Events a change deserves. A condition keeps its
`lastTransitionTime` while its status stays the same, so `SLOMet=False` dates the breach.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth_operator.api.status import (
    CONDITION_METRICS_UNAVAILABLE,
    CONDITION_SLO_MET,
    AutoscalingSignals,
    Condition,
    ConditionStatus,
    InferenceDeploymentStatus,
)
from berth_operator.autoscaling.capacity import SloTargets, slo_breaches, slo_summary
from berth_operator.autoscaling.policy import Action, Decision
from berth_operator.autoscaling.signals import MetricsUnavailable, Observation, Signals
from berth_operator.autoscaling.state import history_to_status

MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class AutoscalerEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


def signals_to_status(signals: Signals) -> AutoscalingSignals:
    def milliseconds(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 1)

    return AutoscalingSignals(
        ttft_p95_milliseconds=milliseconds(signals.ttft_p95_seconds),
        itl_p95_milliseconds=milliseconds(signals.itl_p95_seconds),
        waiting_requests=round(signals.waiting_requests, 2),
        running_requests=round(signals.running_requests, 2),
        kv_cache_usage=None if signals.kv_cache_usage is None else round(min(signals.kv_cache_usage, 1.0), 4),
        requests_per_second=round(signals.requests_per_second, 3),
    )


def autoscaler_status(
    decision: Decision,
    observation: Observation,
    slo: SloTargets,
    previous: InferenceDeploymentStatus,
    now: datetime,
) -> dict[str, Any]:
    """The autoscaler's complete share of the status, in wire form."""
    autoscaling = history_to_status(decision.history).model_copy(
        update={
            "signals": signals_to_status(observation) if isinstance(observation, Signals) else None,
            "last_evaluation_time": now,
        }
    )
    if isinstance(observation, MetricsUnavailable):
        slo_met = _condition(previous, CONDITION_SLO_MET, "Unknown", "NoMetrics", observation.reason, now)
        unavailable = _condition(
            previous,
            CONDITION_METRICS_UNAVAILABLE,
            "True",
            "NoUsableMetrics",
            f"{observation.reason}; holding {decision.replicas} replicas",
            now,
        )
    else:
        breaches = slo_breaches(observation, slo)
        if breaches:
            slo_met = _condition(
                previous, CONDITION_SLO_MET, "False", "TargetsMissed", "; ".join(breaches), now
            )
        else:
            slo_met = _condition(
                previous, CONDITION_SLO_MET, "True", "WithinTargets", slo_summary(observation, slo), now
            )
        unavailable = _condition(
            previous,
            CONDITION_METRICS_UNAVAILABLE,
            "False",
            "MetricsFresh",
            f"{observation.reporting_replicas} replica(s) reporting; newest sample "
            f"{observation.sample_age_seconds:.0f}s old",
            now,
        )
    return {"autoscaling": autoscaling.to_wire(), "conditions": [slo_met.to_wire(), unavailable.to_wire()]}


def autoscaler_events(decision: Decision, previous: InferenceDeploymentStatus) -> list[AutoscalerEvent]:
    """One Event per scale (or would-be scale in dry run, once) and per change of metrics
    availability."""
    events = []
    if decision.apply:
        reason = "ScaledUp" if decision.action is Action.SCALE_UP else "ScaledDown"
        events.append(AutoscalerEvent("Normal", reason, decision.reason))
    elif decision.recorded:
        events.append(AutoscalerEvent("Normal", "DryRunScale", decision.reason))
    was_unavailable = previous.condition(CONDITION_METRICS_UNAVAILABLE)
    if not decision.metrics_available and (was_unavailable is None or was_unavailable.status != "True"):
        events.append(AutoscalerEvent("Warning", "MetricsUnavailable", decision.reason))
    elif decision.metrics_available and was_unavailable is not None and was_unavailable.status == "True":
        events.append(AutoscalerEvent("Normal", "MetricsRestored", "metrics are back; autoscaling resumes"))
    return [AutoscalerEvent(e.type, e.reason, e.message[:MESSAGE_LIMIT]) for e in events]


def _condition(
    previous: InferenceDeploymentStatus,
    condition_type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> Condition:
    before = previous.condition(condition_type)
    since = before.last_transition_time if before is not None and before.status == status else now
    return Condition(
        type=condition_type,
        status=status,
        reason=reason,
        message=message[:MESSAGE_LIMIT],
        last_transition_time=since,
    )
