"""Requests in flight read straight from the replicas, between two Prometheus evaluations.

Why: Prometheus shows an edge only at the next scrape (10 s by default) and the evaluation after it,
where Knative's autoscaler counts the requests in flight at each pod every second and scales within
seconds. The operator therefore also reads each Ready replica's own `/metrics` (its
`vllm:num_requests_running` and `vllm:num_requests_waiting` gauges) every
`spec.autoscaling.podSampling.intervalSeconds`. When they have risen beyond noise over what the last
Prometheus evaluation saw (`rose_beyond_noise`, the policy's own margins), the same evaluation runs
at once with these gauges in place of Prometheus' (`live_signals`); only a scale-up it decides is
acted on. Everything windowed (rates, latency percentiles, capacity) stays Prometheus'; a scale-in
always waits for Prometheus' evaluation and its stabilization window.

Pure functions: parsing the exposition text and combining; the HTTP reads are `pod_sampler`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from prometheus_client.parser import text_string_to_metric_families

from berth_operator.autoscaling.capacity import Tuning
from berth_operator.autoscaling.signals import Signals

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"


@dataclass(frozen=True)
class PodSample:
    """One Ready replica's requests in flight, as its `/metrics` reports them now."""

    running: float
    waiting: float


class PodMetricsError(ValueError):
    """A replica's `/metrics` text that does not hold the gauges (or is not the text format)."""


def parse_pod_metrics(text: str) -> PodSample:
    """The running and waiting gauges of one replica's `/metrics` text, summed over its series (one
    per served model name). PodMetricsError when either gauge is missing or the text does not parse."""
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in (RUNNING, WAITING) and math.isfinite(sample.value):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    except ValueError as error:
        raise PodMetricsError(f"not the Prometheus text format: {error}") from None
    missing = [name for name in (RUNNING, WAITING) if name not in totals]
    if missing:
        raise PodMetricsError(f"no {' or '.join(missing)} gauge")
    return PodSample(running=max(totals[RUNNING], 0.0), waiting=max(totals[WAITING], 0.0))


def in_flight(samples: Sequence[PodSample]) -> float:
    return sum(sample.running + sample.waiting for sample in samples)


def rose_beyond_noise(last: Signals, samples: Sequence[PodSample], tuning: Tuning) -> bool:
    """True when the replicas' requests in flight now exceed what the last evaluation saw by more than
    the noise the policy allows a gauge (`Tuning.trend_margin` and `trend_noise_sigmas`, as for the
    rising-demand guard): worth an evaluation now rather than at the next scrape."""
    before = last.running_requests + last.waiting_requests
    now = in_flight(samples)
    margin = max(tuning.trend_margin * before, tuning.live_noise_sigmas * math.sqrt(max(before, 1.0)))
    return now > before + margin


def sustained_rise(
    last: Signals,
    previous: Sequence[PodSample] | None,
    current: Sequence[PodSample],
    tuning: Tuning,
) -> Sequence[PodSample] | None:
    """The samples to evaluate on when the rise held for a whole sampling interval: this round and the
    one before both rose beyond noise over the last evaluation's gauges; then the lower of the two
    (the level that held). None otherwise. Why two: requests in flight are burstier than Poisson
    (bursty arrivals, output lengths with a long tail), so one read beyond the bar is sometimes a
    spike, and a replica added for a spike is paid for over a whole scale-down window; an edge
    holds, and costs one sampling interval more."""
    if previous is None or not rose_beyond_noise(last, current, tuning):
        return None
    if not rose_beyond_noise(last, previous, tuning):
        return None
    return min((previous, current), key=in_flight)


def live_signals(last: Signals, samples: Sequence[PodSample]) -> Signals:
    """The last Prometheus observation with the requests in flight as the replicas report them now:
    the gauges (and the replicas reporting them) replaced, the windowed rates and latencies kept."""
    return replace(
        last,
        running_requests=sum(sample.running for sample in samples),
        waiting_requests=sum(sample.waiting for sample in samples),
        reporting_replicas=len(samples),
        sample_age_seconds=0.0,
    )
