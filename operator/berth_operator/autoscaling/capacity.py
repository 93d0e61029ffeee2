"""Token-weighted demand, SLO breaches, and the per-replica capacity learned from the metrics.

Why tokens: a replica's time goes to generating tokens and, less per token, to prefilling prompts;
an 8k-token prompt is not a 50-token one. The unit of load here is *token work per second*:
generated tokens plus `prompt_token_cost` times prompt tokens.

Capacity is learned, not configured, from two kinds of evidence (both per serving replica):
- a *floor*: the most work a replica has served while every SLO held — proven safe, until an SLO
  is breached at less (a mix of longer prompts can make the same work slower to first token);
- a *ceiling*: the work a replica serves while saturated (an SLO is breached and requests queue,
  or inter-token latency is over target, scaled back to the target). A rate window that began
  before the saturation understates it; the ratio of running requests now to their window average
  corrects for that, within `max_window_correction`.
Pure functions; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from berth_operator.autoscaling.signals import Signals
from berth_operator.autoscaling.state import GaugeSample


@dataclass(frozen=True)
class Tuning:
    """The policy's constants: documented defaults, not part of the API."""

    scale_up_utilization: float = 0.8
    """Size for each replica to run at most this share of its learned capacity ceiling."""
    scale_down_utilization: float = 0.6
    """Remove a replica only if the survivors then run at most this share of the ceiling; the gap to
    `scale_up_utilization` is the band that prevents flapping."""
    prompt_token_cost: float = 0.15
    """Replica time one prompt token costs, in generated-token equivalents."""
    backlog_drain_seconds: float = 60.0
    """Queued work is planned to be drained within this many seconds: a cold start, since replicas
    added now only start draining it once they are Ready. This default stands until the resource's
    own cold start is measured (`evaluation.tuning_for`, from status.coldStart)."""
    unexplained_breach_seconds: float = 30.0
    """A breach with requests queueing that lasts this long, with no replica starting, adds one
    replica even when the learned capacity says the replicas suffice (the model is wrong then)."""
    ceiling_smoothing: float = 0.5
    """Weight of a new saturation observation against the ceiling learned before (one noisy
    window must not halve what many windows have shown)."""
    max_window_correction: float = 2.0
    """Largest factor by which a windowed rate is corrected upwards to the load of now."""
    trend_margin: float = 0.15
    """Requests in flight now above their window average by more than this share means the demand
    is rising (less is the noise of one gauge sample): the windowed rates are corrected to it, and
    no replica is removed."""
    trend_noise_sigmas: float = 2.0
    """...and by more than this many standard deviations of the count's own noise, sqrt(average):
    the requests in flight of independently arriving requests are Poisson-distributed around their
    mean (an M/G/infinity occupancy), so at 50 in flight one sample of 62 is noise, not a rise.
    Without it, bursty arrivals read as rises: each one sized the scale-down recommendation up for
    a whole stabilization window and held a replica the demand no longer needed."""
    live_noise_sigmas: float = 4.0
    """Requests in flight read from the replicas between scrapes (`autoscaling.live`) are worth an
    evaluation only beyond this many standard deviations of the count's noise over the last
    evaluation's (and `trend_margin` of it): they are read several times between two evaluations,
    and the highest of several noisy reads is biased upwards, so the bar is higher than for the one
    gauge sample a Prometheus evaluation sees. An edge clears it within a read or two."""
    floor_probe: float = 1.2
    """With no ceiling learned, survivors of a scale-down may carry up to this factor of the proven
    floor while every observed p95 is within `scale_down_utilization` of its target. The floor is
    only the most a replica has been asked to serve with every SLO met, and a policy that scales up
    before its replicas are pushed never asks more: held to it, replicas stay long after the demand
    has fallen (azure-conv in bench/autoscale_sim.py). With the latencies that far inside their
    targets a replica has room beyond what it was shown; near them (chat -> RAG's long prompts) a
    probe was taken back within a minute, so none is taken there. A probe that holds raises the
    floor to what the survivors serve."""
    slot_scale_up_utilization: float = 0.7
    """Requests in flight (running, and waiting up to one batch per replica while no capacity is
    learned) beyond this share of the batch slots scale up: a replica nears its limit before every
    slot is taken, and the token rule needs a learned capacity this rule does not."""
    slot_scale_down_utilization: float = 0.5
    """Remove a replica only if the survivors' requests running stay within this share of their
    slots."""
    full_slots: float = 0.95
    """Requests running over batch slots (all replicas') from which the slots count as all taken."""
    trend_seconds: float = 180.0
    """The demand's trend is the slope of the windowed request rates of this many seconds of
    evaluations (`autoscaling.trend`)."""
    trend_horizon_seconds: float = 300.0
    """How far ahead the trend is projected: the window's lag, a cold start that replicas added now
    wait out, and the minutes in which they then serve a demand still rising (a rise of 4% a
    minute reaches `max_trend_growth`)."""
    max_trend_growth: float = 1.2
    """Most the trend may add to the demand (a factor): a steeper rise is an edge, which the gauges
    follow within an evaluation; the trend is for the slow rise they cannot tell from noise."""
    recent_seconds: float = 120.0
    """The last evaluation's gauges count for the short-term trend only if it is this recent."""

    def __post_init__(self) -> None:
        for name in ("scale_up_utilization", "scale_down_utilization"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name}: {value!r} must be in (0, 1]")
        if self.scale_down_utilization > self.scale_up_utilization:
            raise ValueError(
                f"scale_down_utilization ({self.scale_down_utilization}) must not exceed "
                f"scale_up_utilization ({self.scale_up_utilization}), or the policy would flap"
            )
        if self.prompt_token_cost < 0:
            raise ValueError(f"prompt_token_cost: {self.prompt_token_cost!r} must be >= 0")
        if self.backlog_drain_seconds <= 0:
            raise ValueError(f"backlog_drain_seconds: {self.backlog_drain_seconds!r} must be > 0")
        if not 0 < self.ceiling_smoothing <= 1:
            raise ValueError(f"ceiling_smoothing: {self.ceiling_smoothing!r} must be in (0, 1]")
        if self.max_trend_growth < 1:
            raise ValueError(f"max_trend_growth: {self.max_trend_growth!r} must be >= 1")
        if self.trend_seconds <= 0:
            raise ValueError(f"trend_seconds: {self.trend_seconds!r} must be > 0")
        if self.trend_noise_sigmas < 0:
            raise ValueError(f"trend_noise_sigmas: {self.trend_noise_sigmas!r} must be >= 0")
        if self.floor_probe < 1:
            raise ValueError(f"floor_probe: {self.floor_probe!r} must be >= 1")
        if self.max_window_correction < 1:
            raise ValueError(f"max_window_correction: {self.max_window_correction!r} must be >= 1")


@dataclass(frozen=True)
class SloTargets:
    """p95 latency targets in seconds; None where the spec sets none."""

    ttft_p95_seconds: float | None
    itl_p95_seconds: float | None


@dataclass(frozen=True)
class Load:
    """Work served (over the window), work arriving now (served, corrected to the requests in flight
    now, plus the queue's growth), work already queued, and whether the demand is rising."""

    served: float
    arriving: float
    queued: float
    rising: bool = False
    queue_growth: float = 0.0
    """Requests per second the queue grows by (negative: it drains)."""


def slo_breaches(signals: Signals, slo: SloTargets) -> tuple[str, ...]:
    """Each target the signals miss, in words with the numbers; empty when all hold."""
    breaches = []
    if _over(signals.ttft_p95_seconds, slo.ttft_p95_seconds):
        breaches.append(f"TTFT p95 {_ms(signals.ttft_p95_seconds)} > {_ms(slo.ttft_p95_seconds)}")
    if _over(signals.itl_p95_seconds, slo.itl_p95_seconds):
        breaches.append(f"ITL p95 {_ms(signals.itl_p95_seconds)} > {_ms(slo.itl_p95_seconds)}")
    return tuple(breaches)


def latencies_within(signals: Signals, slo: SloTargets, share: float) -> bool:
    """Whether every p95 the spec targets was observed, at most `share` of its target."""
    pairs = [
        (observed, target)
        for observed, target in (
            (signals.ttft_p95_seconds, slo.ttft_p95_seconds),
            (signals.itl_p95_seconds, slo.itl_p95_seconds),
        )
        if target is not None
    ]
    return bool(pairs) and all(
        observed is not None and observed <= share * target for observed, target in pairs
    )


def slo_summary(signals: Signals, slo: SloTargets) -> str:
    """The observed latencies against their targets, e.g. 'TTFT p95 212ms <= 500ms'."""
    parts = []
    for label, observed, target in (
        ("TTFT", signals.ttft_p95_seconds, slo.ttft_p95_seconds),
        ("ITL", signals.itl_p95_seconds, slo.itl_p95_seconds),
    ):
        if target is None:
            continue
        if observed is None:
            parts.append(f"{label} p95 n/a (no requests in window)")
        else:
            parts.append(f"{label} p95 {_ms(observed)} {'>' if observed > target else '<='} {_ms(target)}")
    return "; ".join(parts)


def measure_load(
    signals: Signals, tuning: Tuning, last: GaugeSample | None = None, now: float | None = None
) -> Load:
    """Served, arriving and queued work, and whether the demand is rising.

    The windowed rates lag a change of load by half a window; the gauges do not. Every request in
    flight advances at about the same pace, so the work served now is the window's rate scaled by
    the requests in flight now over their window average (without a queue only beyond the noise
    margin, and as far as the last evaluation's count agrees): this follows a rising load, a
    saturation that began inside the window, and replicas that just became Ready. What the
    replicas cannot take is the queue's growth: since the last evaluation if it is recent (the
    window's slope stays high for a window after the queue stopped growing), else over the
    window."""
    served = (
        signals.generation_tokens_per_second + tuning.prompt_token_cost * signals.prompt_tokens_per_second
    )
    recent_growth, running_before = _since_last(signals, last, now, tuning)
    queue_growth = signals.waiting_growth_per_second if recent_growth is None else recent_growth
    trend = _trend(signals, running_before, tuning)
    rising = signals.waiting_requests > 0 or queue_growth > 0 or trend > 1.0
    if signals.requests_per_second <= 0 or served <= 0:
        return Load(served, served, 0.0, rising, queue_growth)
    work_per_request = served / signals.requests_per_second
    queued = signals.waiting_requests * work_per_request
    if signals.waiting_requests <= 0:
        return Load(served, served * trend, queued, rising, queue_growth)
    arriving = served * _window_correction(signals, tuning) + max(queue_growth, 0.0) * work_per_request
    return Load(served, arriving, queued, rising, queue_growth)


def _since_last(
    signals: Signals, last: GaugeSample | None, now: float | None, tuning: Tuning
) -> tuple[float | None, float | None]:
    """The queue's growth per second since the last evaluation and its requests running then; None
    without a recent last evaluation."""
    if last is None or now is None or not 0 < now - last.time <= tuning.recent_seconds:
        return None, None
    return (signals.waiting_requests - last.waiting_requests) / (now - last.time), last.running_requests


def _trend(signals: Signals, running_before: float | None, tuning: Tuning) -> float:
    """Requests in flight now over their window average, 1 within the noise margin (the larger of
    `trend_margin` and `trend_noise_sigmas` standard deviations of a Poisson count). With the last
    evaluation's count at hand, the lower of the two: a rise both gauges show, not one sample's
    noise."""
    if signals.running_requests_average <= 0:
        return 1.0
    running = (
        signals.running_requests if running_before is None else min(signals.running_requests, running_before)
    )
    average = signals.running_requests_average
    ratio = running / average
    margin = max(tuning.trend_margin, tuning.trend_noise_sigmas / math.sqrt(average))
    if ratio <= 1 + margin:
        return 1.0
    return min(ratio, tuning.max_window_correction)


def learn_capacity(
    signals: Signals,
    load: Load,
    slo: SloTargets,
    ceiling: float | None,
    floor: float | None,
    tuning: Tuning,
    batch_slots: int | None = None,
) -> tuple[float | None, float | None]:
    """Fold this observation into (ceiling, floor); both per replica, in token work per second.

    Saturation is an SLO breached while requests queue, inter-token latency over target, or --
    with the batch slots known -- every slot taken and requests waiting, which a replica shows
    seconds before the window's p95 crosses the target."""
    serving = signals.serving_replicas_average
    if serving <= 0 or load.served <= 0:
        return ceiling, floor
    per_replica = load.served / serving
    breaches = slo_breaches(signals, slo)
    slots_full = (
        batch_slots is not None
        and signals.waiting_requests > 0
        and signals.running_requests >= tuning.full_slots * batch_slots * signals.reporting_replicas
    )
    if not breaches and not slots_full:
        floor = per_replica if floor is None else max(floor, per_replica)
        if ceiling is not None and ceiling < floor:
            ceiling = floor
        return ceiling, floor
    if floor is not None and per_replica < floor:
        floor = per_replica  # a breach at less than the floor: that much is not safe for this mix
    itl_over = _over(signals.itl_p95_seconds, slo.itl_p95_seconds)
    if not itl_over and signals.waiting_requests <= 0:
        return ceiling, floor
    if signals.serving_replicas_average < signals.reporting_replicas - 0.01:
        return ceiling, floor  # a replica joined inside the window: per-replica rates mix two states
    observed = per_replica * _window_correction(signals, tuning)
    if itl_over and signals.itl_p95_seconds and slo.itl_p95_seconds:
        observed *= slo.itl_p95_seconds / signals.itl_p95_seconds
    if floor is not None and not itl_over:
        observed = max(observed, floor)
    if ceiling is not None:
        observed = tuning.ceiling_smoothing * observed + (1 - tuning.ceiling_smoothing) * ceiling
    return observed, floor


def _window_correction(signals: Signals, tuning: Tuning) -> float:
    """Requests in flight now over their window average, within [1, max_window_correction]."""
    if signals.running_requests_average <= 0:
        return 1.0
    ratio = signals.running_requests / signals.running_requests_average
    return min(max(ratio, 1.0), tuning.max_window_correction)


def _over(observed: float | None, target: float | None) -> bool:
    return observed is not None and target is not None and observed > target


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f}ms"
