"""One autoscaling evaluation, from the status the last one left to the status this one leaves.

The operator's handler and the simulation in `bench/` both call `evaluate`, so nothing the operator
forgets between evaluations can be remembered by the simulation: the policy's memory is rebuilt
from `status` (what the API server stored), the pure `decide` runs, and what it must remember
goes back out as the autoscaler's share of the status. The handler only adds the I/O around it:
the Prometheus queries, the Deployments' ready counts, the write of `status.desiredReplicas`,
the status apply and the Events.

The evaluation's settings come from the spec, through `targets_from_spec` and
`max_sample_age_seconds`, so a simulation built from a spec with the API's defaults runs with the
operator's windows and interval. The cold start the policy plans around is the resource's own, as
measured in status.coldStart (`tuning_for`), not a constant.

When the next evaluation runs is decided here too (`next_evaluation_seconds`), from the age of the
newest sample the queries returned: an evaluation just after a scrape lands sees a change (the
edge of a burst) as soon as Prometheus has it, where a free-running timer sees it on average half a
scrape interval later, and drifts by its own run time each round.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus
from berth_operator.autoscaling.capacity import SloTargets, Tuning
from berth_operator.autoscaling.policy import DEFAULT_TUNING, Action, Decision, ReplicaCounts, Targets, decide
from berth_operator.autoscaling.report import AutoscalerEvent, autoscaler_events, autoscaler_status
from berth_operator.autoscaling.signals import Observation, Signals
from berth_operator.autoscaling.state import history_from_status

COLD_START_BOUNDS_SECONDS = (10.0, 900.0)
"""A measured cold start is planned with within these bounds: a pod that was Ready at once (a
restart on a warm node) says nothing about the next scale-up; one stuck for an hour is a fault the
status reports, not a horizon to plan over."""
MIN_STALENESS_SECONDS = 60.0
"""Metrics count as stale when the newest sample is older than max(60 s, 3 intervals)."""
SCRAPE_LANDING_SECONDS = 1.0
"""An evaluation is due this long after the next scrape is (seconds): Prometheus stamps a sample
with its scrape's start and can answer with it once the scrape has finished, which for a runtime's
/metrics takes well under a second."""
SHORTEST_FRACTION = 0.75
"""The next evaluation is never sooner than this share of the interval: it may come a little early
to stay just after the scrapes, never so early that a scrape interval other than the evaluation
interval makes evaluations (and status writes) more frequent than one per interval."""


def max_sample_age_seconds(interval_seconds: float) -> float:
    """Oldest newest-sample (seconds) the autoscaler still acts on: a scrape or two may be missed,
    a silent exporter may not."""
    return max(MIN_STALENESS_SECONDS, 3.0 * interval_seconds)


def targets_from_spec(spec: InferenceDeploymentSpec) -> Targets:
    """What the policy needs from the spec: bounds, SLO targets in seconds, GPUs, windows, dryRun,
    and the batch slots of a replica."""
    autoscaling = spec.autoscaling

    def seconds(milliseconds: int | None) -> float | None:
        return None if milliseconds is None else milliseconds / 1000

    return Targets(
        min_replicas=autoscaling.min_replicas,
        max_replicas=autoscaling.max_replicas,
        slo=SloTargets(
            ttft_p95_seconds=seconds(autoscaling.slo.time_to_first_token_p95_milliseconds),
            itl_p95_seconds=seconds(autoscaling.slo.inter_token_latency_p95_milliseconds),
        ),
        gpus_per_replica=spec.resources.gpu.count,
        max_gpus=autoscaling.max_gpus,
        scale_down_stabilization_seconds=autoscaling.scale_down_stabilization_seconds,
        scale_up_stabilization_seconds=autoscaling.scale_up_stabilization_seconds,
        dry_run=autoscaling.dry_run,
        batch_slots=spec.runtime.max_batch_size,
        metrics_window_seconds=autoscaling.metrics_window_seconds,
    )


def next_evaluation_seconds(observation: Observation, interval_seconds: float) -> float:
    """Seconds from this evaluation to the next: the first time, at least SHORTEST_FRACTION of the
    interval away, that is SCRAPE_LANDING_SECONDS after a sample is due -- taking samples to come
    every interval from the newest one's time, as the chart's PodMonitor scrapes at the API's
    default interval (10 s). In step with the scrapes that is one interval; out of step, the
    evaluation after next is in step. Without metrics there is no phase to follow: the interval."""
    if not isinstance(observation, Signals):
        return interval_seconds
    shortest = SHORTEST_FRACTION * interval_seconds
    # newest + k * interval + landing, as seconds from now, for the smallest k that is >= shortest.
    return shortest + (SCRAPE_LANDING_SECONDS - observation.sample_age_seconds - shortest) % interval_seconds


@dataclass(frozen=True)
class Evaluation:
    """A decision, the autoscaler's share of the status that records it (wire form: what the
    handler applies under its field manager), the Events it deserves, and when the next evaluation
    is due."""

    decision: Decision
    status: dict[str, Any]
    events: list[AutoscalerEvent]
    next_evaluation_time: datetime


def tuning_for(previous: InferenceDeploymentStatus) -> Tuning:
    """The policy's constants around this resource's measured cold start (status.coldStart's
    creation-to-Ready median): queued work is planned to drain over it, and the demand's trend is
    projected that much further ahead than the default's assumed cold start. Unmeasured (no replica
    has started yet), the defaults."""
    measured = previous.cold_start
    if measured is None:
        return DEFAULT_TUNING
    low, high = COLD_START_BOUNDS_SECONDS
    cold_start = min(max(measured.total_seconds, low), high)
    assumed = DEFAULT_TUNING.backlog_drain_seconds
    return replace(
        DEFAULT_TUNING,
        backlog_drain_seconds=cold_start,
        trend_horizon_seconds=DEFAULT_TUNING.trend_horizon_seconds + cold_start - assumed,
    )


def evaluate(
    observation: Observation,
    targets: Targets,
    current: ReplicaCounts,
    previous: InferenceDeploymentStatus,
    now: datetime,
    interval_seconds: float,
) -> Evaluation:
    """Rebuild the policy's memory from `previous` (the status as read), decide, say what to write,
    and when to evaluate next (around `interval_seconds` from `now`)."""
    history = history_from_status(previous)
    decision = decide(observation, targets, current, history, now.timestamp(), tuning_for(previous))
    return Evaluation(
        decision=decision,
        status=autoscaler_status(decision, observation, targets.slo, previous, now),
        events=autoscaler_events(decision, previous),
        next_evaluation_time=now + timedelta(seconds=next_evaluation_seconds(observation, interval_seconds)),
    )


def acted_on_live(decision: Decision) -> bool:
    """Whether an evaluation on the replicas' own gauges (`autoscaling.live`) is acted on: only when it
    scales up for real. Anything else waits for the next Prometheus evaluation, which sees the
    windows as well, so a scale-in never rests on a gauge read between scrapes."""
    return decision.action is Action.SCALE_UP and decision.apply
