"""The autoscaling decision, as one pure function:
`decide(observation, targets, current, history, now) -> Decision`.

No I/O, no clock, no Kubernetes: the operator's timer and the simulation in `bench/` call the very
same function. The rules, in the order they apply:

1. Bounds: the answer always lies in [minReplicas, min(maxReplicas, maxGpus // gpus per replica)];
   the GPU budget wins over minReplicas when the two disagree (`api.autoscaling.replica_bounds`, the
   same definition the Deployment's count is clamped by).
2. The count is the resource's: `current.desired` is the count the InferenceDeployment drives its
   Deployment to, never the Deployment's own, which someone may have changed by hand for the moment
   before the operator sets it back. A hand edit therefore never becomes a decision.
3. Missing or stale metrics: hold the current count (only bounds move it) and say why.
4. Scale up at once, to the count token-weighted demand needs at `scale_up_utilization` of the
   learned per-replica capacity — not one replica per period. Demand follows the gauges, not only
   the window: the served rate scaled by the requests in flight now over their window average,
   plus the queue's growth since the last evaluation (kept in status with the signals); on a slow
   rise, what the demand's trend over the last minutes adds within a few (`trend`). The
   requests in flight also size on their own against the batch slots (`runtime.maxBatchSize` per
   replica, at `slot_scale_up_utilization`): a burst is met at the first evaluation that shows it,
   before any capacity is learned. Replicas not yet Ready count as capacity on its way: while they
   start, a breach alone adds nothing; only demand beyond all replicas, starting ones included,
   scales up further. With no replica starting, a breach adds at least one when capacity is not
   learned yet, or when requests still queue (and the queue is not draining) after
   `unexplained_breach_seconds` although the capacity model says the replicas suffice. A non-zero
   scale-up stabilization takes the lowest recommendation of its window.
5. Scale down only when no SLO is breached, no scale-up happened within the stabilization window,
   the demand is not rising (no request waiting, the queue not growing, the requests in flight not
   above their window average in this evaluation and the last, the windowed request rate not up
   since the last evaluation beyond its noise: `trend.rate_jump`) and the highest recommendation in
   that window is below the current count — where a recommendation is the fewest replicas whose
   survivors (load x N / (N - k)) stay within `scale_down_utilization` of capacity and whose
   requests running stay within `slot_scale_down_utilization` of their slots. The gap between the
   up and down utilizations is what stops 2 <-> 1 flapping; the rising-demand guard is what stops
   a scale-in into a rising edge while the windows still see the low phase before it.
6. dryRun: decide and report the same way, but `apply` is False and the stabilization window is
   not restarted; a would-be change is recorded once, not every interval.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from berth_operator.api.autoscaling import replica_bounds
from berth_operator.autoscaling.capacity import (
    SloTargets,
    Tuning,
    latencies_within,
    learn_capacity,
    measure_load,
    slo_breaches,
    slo_summary,
)
from berth_operator.autoscaling.signals import MetricsUnavailable, Observation, Signals
from berth_operator.autoscaling.sizing import (
    fewest_survivors,
    in_flight,
    replicas_for,
    sizing_words,
    slot_words,
    slots_for,
    survivor_load,
    survivor_words,
)
from berth_operator.autoscaling.state import DecisionRecord, GaugeSample, Recommendation, ScalingHistory
from berth_operator.autoscaling.trend import demand_growth, rate_jump, trend_words

DEFAULT_TUNING = Tuning()


@dataclass(frozen=True)
class Targets:
    """What the spec asks of the autoscaler (spec.autoscaling plus the GPUs one replica holds)."""

    min_replicas: int
    max_replicas: int
    slo: SloTargets
    gpus_per_replica: int = 1
    max_gpus: int | None = None
    scale_down_stabilization_seconds: float = 300.0
    scale_up_stabilization_seconds: float = 0.0
    dry_run: bool = False
    batch_slots: int | None = None
    """Sequences one replica runs at once (`runtime.maxBatchSize`); None: unknown, not sized by."""
    metrics_window_seconds: float = 60.0
    """The rate window of the signals (`metricsWindowSeconds`): how many requests a windowed rate
    counts, hence how much it moves by noise alone between two evaluations."""

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"minReplicas: {self.min_replicas!r} must be >= 0")
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas: {self.max_replicas!r} must be >= minReplicas ({self.min_replicas})"
            )
        if self.gpus_per_replica < 0:
            raise ValueError(f"resources.gpu.count: {self.gpus_per_replica!r} must be >= 0")
        if self.max_gpus is not None and self.max_gpus < 0:
            raise ValueError(f"maxGpus: {self.max_gpus!r} must be >= 0")
        if self.batch_slots is not None and self.batch_slots < 1:
            raise ValueError(f"runtime.maxBatchSize: {self.batch_slots!r} must be >= 1")
        for name in ("scale_down_stabilization_seconds", "scale_up_stabilization_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)!r} must be >= 0")

    def bounds(self) -> tuple[int, int]:
        """(lowest, highest) replica count allowed; the GPU budget caps both (the spec's own rule,
        `api.autoscaling.replica_bounds`)."""
        return replica_bounds(self.min_replicas, self.max_replicas, self.gpus_per_replica, self.max_gpus)


@dataclass(frozen=True)
class ReplicaCounts:
    """The replicas the resource runs now: the count it drives its Deployment to (status, not the
    Deployment's own field), and how many of the Deployment's replicas are Ready."""

    desired: int
    ready: int

    @property
    def starting(self) -> int:
        return max(self.desired - self.ready, 0)


class Action(StrEnum):
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    HOLD = "Hold"


@dataclass(frozen=True)
class Decision:
    """The count to run, why (in words with the numbers), and the history to store for next time."""

    replicas: int
    reason: str
    action: Action
    apply: bool
    """True when the Deployment's replicas must be set to `replicas` (never in dry run)."""
    metrics_available: bool
    slo_met: bool | None
    history: ScalingHistory
    recorded: bool = False
    """True when this decision added an entry to the history (a change, or a new would-be change)."""


def decide(
    observation: Observation,
    targets: Targets,
    current: ReplicaCounts,
    history: ScalingHistory,
    now: float,
    tuning: Tuning = DEFAULT_TUNING,
) -> Decision:
    """Decide the replica count for one evaluation. See the module docstring for the rules."""
    window = max(targets.scale_down_stabilization_seconds, targets.scale_up_stabilization_seconds)
    history = history.pruned(now, window)
    if isinstance(observation, MetricsUnavailable):
        target, reason = _hold_without_metrics(observation, targets, current.desired)
        return _finish(target, reason, None, targets, current, history, now, False)

    verdict = _evaluate(observation, targets, current, history, now, tuning)
    return _finish(
        verdict.replicas, verdict.reason, not verdict.breaches, targets, current, verdict.history, now, True
    )


@dataclass(frozen=True)
class _ScalingVerdict:
    """What the bounds and sizing rules concluded: the count, why, the SLOs breached, the history."""

    replicas: int
    reason: str
    breaches: tuple[str, ...]
    history: ScalingHistory


def _hold_without_metrics(
    observation: MetricsUnavailable, targets: Targets, replicas: int
) -> tuple[int, str]:
    lowest, highest = targets.bounds()
    target = min(max(replicas, lowest), highest)
    if target != replicas:
        return target, (
            f"metrics unavailable ({observation.reason}); {replicas} replicas is outside the bounds "
            f"[{lowest}, {highest}], moving to {target}"
        )
    return target, f"holding {replicas} replicas: metrics unavailable ({observation.reason})"


def _evaluate(
    signals: Signals,
    targets: Targets,
    current: ReplicaCounts,
    history: ScalingHistory,
    now: float,
    tuning: Tuning,
) -> _ScalingVerdict:
    lowest, highest = targets.bounds()
    replicas = current.desired
    load = measure_load(signals, tuning, history.last_sample, now)
    history = replace(
        history, last_sample=GaugeSample(now, signals.waiting_requests, signals.running_requests)
    )
    breaches = slo_breaches(signals, targets.slo)
    learned_before = history.capacity_ceiling
    ceiling, floor = learn_capacity(
        signals,
        load,
        targets.slo,
        history.capacity_ceiling,
        history.capacity_floor,
        tuning,
        targets.batch_slots,
    )
    breach_since = (history.breach_since or now) if breaches else None
    history = replace(history, capacity_ceiling=ceiling, capacity_floor=floor, breach_since=breach_since)
    summary = slo_summary(signals, targets.slo)
    if breach_since is not None and now > breach_since:
        summary += f" (breached for {now - breach_since:.0f}s)"

    growth = demand_growth(history.recommendations, now, signals.requests_per_second, tuning)
    rate_before = rate_jump(
        history.recommendations, now, signals.requests_per_second, targets.metrics_window_seconds, tuning
    )
    demand = max(load.arriving, load.served * growth) + load.queued / tuning.backlog_drain_seconds
    need_up = replicas_for(demand, ceiling, tuning.scale_up_utilization)
    requests = in_flight(signals, targets.batch_slots, learned_before) * growth
    by_slots = slots_for(requests, targets.batch_slots, tuning.slot_scale_up_utilization)
    slots_decide = by_slots > replicas and (need_up is None or by_slots > need_up)
    if slots_decide:
        need_up = by_slots
    persistent = (
        breach_since is not None
        and now - breach_since >= tuning.unexplained_breach_seconds
        and signals.waiting_requests > 0
        and load.queue_growth >= 0
    )
    forced = (
        bool(breaches)
        and current.starting == 0
        and (ceiling is None or persistent)
        and (need_up is None or need_up <= replicas)
    )
    if forced:
        need_up = replicas + 1
    carried = survivor_load(load, signals.waiting_requests, growth)
    floor_trust = (
        tuning.floor_probe if latencies_within(signals, targets.slo, tuning.scale_down_utilization) else 1.0
    )
    need_down = fewest_survivors(
        carried,
        ceiling,
        floor,
        tuning,
        replicas,
        signals.running_requests * growth,
        targets.batch_slots,
        floor_trust,
    )
    if need_up is not None:
        need_down = max(need_down, need_up)
    recommendation = Recommendation(
        now, need_up if need_up is not None else replicas, need_down, signals.requests_per_second
    )
    history = history.with_recommendation(recommendation)
    sizing = (
        slot_words(requests, targets.batch_slots, tuning)
        if slots_decide and targets.batch_slots is not None
        else sizing_words(load, demand, ceiling, tuning, current.starting)
    ) + trend_words(growth, tuning)

    if replicas > highest or replicas < lowest:
        target = min(max(replicas, lowest), highest)
        return _ScalingVerdict(
            target, f"{replicas} replicas is outside the bounds [{lowest}, {highest}]", breaches, history
        )

    if need_up is not None and need_up > replicas:
        window_start = now - targets.scale_up_stabilization_seconds
        candidate = min(r.scale_up for r in history.recommendations if r.time >= window_start)
        target = min(candidate, highest)
        if target > replicas:
            cause = "; ".join(breaches) if breaches else summary
            why = (
                "an SLO breach the capacity model does not explain, with no replica starting, adds one"
                if forced
                else sizing
            )
            if candidate > highest:
                why += f", but the bound is {highest}"
            return _ScalingVerdict(target, f"{cause}; {why}", breaches, history)
        if candidate > highest:
            return _ScalingVerdict(
                replicas, f"{summary}; {sizing}, but the bound is {highest}", breaches, history
            )
        return _ScalingVerdict(
            replicas,
            f"{summary}; {sizing}; waiting out the {targets.scale_up_stabilization_seconds:.0f}s "
            "scale-up stabilization",
            breaches,
            history,
        )

    if breaches:
        on_the_way = (
            f"{current.starting} replica(s) starting count as capacity on its way"
            if current.starting
            else sizing
        )
        return _ScalingVerdict(replicas, f"holding {replicas}: {summary}; {on_the_way}", breaches, history)

    down_window_start = now - targets.scale_down_stabilization_seconds
    stable = history.last_scale_up_time is None or history.last_scale_up_time <= down_window_start
    observed_whole_window = (
        bool(history.recommendations) and history.recommendations[0].time <= down_window_start
    )
    if need_down < replicas and stable and observed_whole_window and (load.rising or rate_before is not None):
        return _ScalingVerdict(
            replicas,
            f"holding {replicas}: {summary}; demand is rising ({_rising_words(signals, rate_before)}), "
            "no replica is removed into it",
            breaches,
            history,
        )
    if need_down < replicas and stable and observed_whole_window:
        candidate = max(r.scale_down for r in history.recommendations if r.time >= down_window_start)
        target = max(candidate, lowest)
        if target < replicas:
            survivors = survivor_words(carried, target, ceiling, floor, tuning, floor_trust)
            return _ScalingVerdict(
                target,
                f"{summary}; {survivors}; no scale-up needed for "
                f"{targets.scale_down_stabilization_seconds:.0f}s",
                breaches,
                history,
            )
    return _ScalingVerdict(replicas, f"holding {replicas}: {summary}; {sizing}", breaches, history)


def _rising_words(signals: Signals, rate_before: float | None) -> str:
    if signals.waiting_requests > 0:
        return f"{signals.waiting_requests:.0f} requests waiting"
    if rate_before is not None:
        return (
            f"{signals.requests_per_second:.1f} requests/s over the window, "
            f"{rate_before:.1f} at the last evaluation"
        )
    return (
        f"{signals.running_requests:.0f} requests in flight, "
        f"{signals.running_requests_average:.0f} on average over the window"
    )


def _finish(
    target: int,
    reason: str,
    slo_met: bool | None,
    targets: Targets,
    current: ReplicaCounts,
    history: ScalingHistory,
    now: float,
    metrics_available: bool,
) -> Decision:
    replicas = current.desired
    recorded = False
    action = Action.SCALE_UP if target > replicas else Action.SCALE_DOWN if target < replicas else Action.HOLD
    if action is not Action.HOLD:
        reason = f"{'dry run: would scale' if targets.dry_run else 'scaled'} {replicas} -> {target}: {reason}"
        last = history.decisions[-1] if history.decisions else None
        repeated = (
            last is not None and last.dry_run and (last.from_replicas, last.to_replicas) == (replicas, target)
        )
        recorded = not (targets.dry_run and repeated)
        if recorded:
            history = history.with_decision(DecisionRecord(now, replicas, target, reason, targets.dry_run))
    if action is Action.SCALE_UP and not targets.dry_run:
        history = replace(history, last_scale_up_time=now)
    return Decision(
        replicas=target,
        reason=reason,
        action=action,
        apply=action is not Action.HOLD and not targets.dry_run,
        metrics_available=metrics_available,
        slo_met=slo_met,
        history=history,
        recorded=recorded,
    )
