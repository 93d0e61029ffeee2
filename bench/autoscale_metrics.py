"""What each autoscaler can see of the simulated replicas: a tiny Prometheus, and a queue-proxy.

`MetricStore` scrapes every replica every `scrape_interval` seconds and `signals(now)` evaluates the
same aggregations as `berth_operator.autoscaling.signals.signal_queries` over the stored samples,
with one window for rates and latencies as the operator's `metricsWindowSeconds`: `rate()` from the
first and last sample in the window, `histogram_quantile` with linear interpolation inside a bucket,
`avg_over_time`, `deriv` (least squares), `count`, and the age of the newest sample. A replica
that is gone stops having series at once (Prometheus' staleness markers), and a starting replica
has none until it is Ready. `pod_gauges(now)` is what a Prometheus adapter hands the HPA: each
Ready pod's newest running and waiting gauges.

Knative's autoscaler does not read Prometheus: every pod's queue-proxy reports the requests in
flight to it each second. `record_concurrency` keeps that per-second total (requests buffered
while no replica is Ready included, as Knative's activator holds them), and
`concurrency_average(now, seconds)` averages it over a window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from bench.autoscale_serving import ITL_BUCKETS, TTFT_BUCKETS, Replica
from berth_operator.autoscaling.signals import MetricsUnavailable, Observation, Signals


@dataclass(frozen=True)
class Scrape:
    time: float
    prompt_tokens: float
    generation_tokens: float
    request_success: float
    ttft_buckets: np.ndarray
    itl_buckets: np.ndarray
    running: float
    waiting: float
    kv_usage: float


class MetricStore:
    def __init__(self, window_seconds: float, max_sample_age_seconds: float) -> None:
        self.window_seconds = window_seconds
        self.max_sample_age_seconds = max_sample_age_seconds
        self.series: dict[int, list[Scrape]] = {}
        self.concurrency: deque[tuple[float, float]] = deque()

    def scrape(self, now: float, replicas: list[Replica]) -> None:
        alive = set()
        for replica in replicas:
            if replica.ready_at > now:
                continue
            alive.add(id(replica))
            metrics = replica.metrics
            self.series.setdefault(id(replica), []).append(
                Scrape(
                    time=now,
                    prompt_tokens=metrics.prompt_tokens,
                    generation_tokens=metrics.generation_tokens,
                    request_success=metrics.request_success,
                    ttft_buckets=metrics.ttft_buckets.copy(),
                    itl_buckets=metrics.itl_buckets.copy(),
                    running=replica.running,
                    waiting=len(replica.waiting),
                    kv_usage=replica.kv_usage(),
                )
            )
        for key in list(self.series):
            if key not in alive:
                del self.series[key]
            else:
                self.series[key] = [s for s in self.series[key] if now - s.time <= self.window_seconds]

    def record_concurrency(self, now: float, in_flight: float) -> None:
        self.concurrency.append((now, in_flight))
        while self.concurrency and now - self.concurrency[0][0] > 3600.0:
            self.concurrency.popleft()

    def concurrency_average(self, now: float, seconds: float) -> float:
        values = [value for time, value in self.concurrency if now - time < seconds]
        return float(np.mean(values)) if values else 0.0

    def pod_gauges(self, now: float) -> list[float]:
        """Running + waiting requests of each pod with a sample in the window (its newest)."""
        return [
            samples[-1].running + samples[-1].waiting
            for samples in self.series.values()
            if samples and now - samples[-1].time <= self.window_seconds
        ]

    def signals(self, now: float) -> Observation:
        windows = [
            [s for s in samples if now - s.time <= self.window_seconds] for samples in self.series.values()
        ]
        windows = [samples for samples in windows if samples]
        if not windows:
            return MetricsUnavailable("no vllm:num_requests_running series")
        age = now - max(samples[-1].time for samples in windows)
        if age > self.max_sample_age_seconds:
            return MetricsUnavailable(f"newest sample is {age:.0f}s old")

        def rate(name: str) -> float:
            total = 0.0
            for samples in windows:
                if len(samples) >= 2:
                    first, last = samples[0], samples[-1]
                    total += (getattr(last, name) - getattr(first, name)) / (last.time - first.time)
            return total

        def bucket_rates(name: str) -> np.ndarray:
            total = 0.0
            for samples in windows:
                if len(samples) >= 2:
                    total = total + (getattr(samples[-1], name) - getattr(samples[0], name))
            return np.asarray(total)

        return Signals(
            ttft_p95_seconds=histogram_quantile(0.95, TTFT_BUCKETS, bucket_rates("ttft_buckets")),
            itl_p95_seconds=histogram_quantile(0.95, ITL_BUCKETS, bucket_rates("itl_buckets")),
            waiting_requests=float(sum(samples[-1].waiting for samples in windows)),
            running_requests=float(sum(samples[-1].running for samples in windows)),
            running_requests_average=sum(float(np.mean([s.running for s in samples])) for samples in windows),
            kv_cache_usage=float(np.mean([np.mean([s.kv_usage for s in samples]) for samples in windows])),
            prompt_tokens_per_second=rate("prompt_tokens"),
            generation_tokens_per_second=rate("generation_tokens"),
            requests_per_second=rate("request_success"),
            waiting_growth_per_second=sum(_slope(samples) for samples in windows),
            reporting_replicas=len(windows),
            serving_replicas_average=sum(len(samples) for samples in windows)
            / max(len(samples) for samples in windows),
            sample_age_seconds=age,
        )


def histogram_quantile(quantile: float, bounds: np.ndarray, counts: np.ndarray) -> float | None:
    """Prometheus' histogram_quantile over non-cumulative bucket counts (last bucket is +Inf)."""
    if counts.ndim == 0 or counts.sum() <= 0:
        return None
    cumulative = np.cumsum(counts)
    rank = quantile * cumulative[-1]
    index = int(np.searchsorted(cumulative, rank))
    if index >= len(bounds):
        return float(bounds[-1])
    lower = 0.0 if index == 0 else float(bounds[index - 1])
    below = 0.0 if index == 0 else float(cumulative[index - 1])
    inside = float(counts[index])
    fraction = (rank - below) / inside if inside > 0 else 1.0
    return lower + (float(bounds[index]) - lower) * fraction


def _slope(samples: list[Scrape]) -> float:
    if len(samples) < 2:
        return 0.0
    times = np.array([s.time for s in samples])
    values = np.array([s.waiting for s in samples])
    times = times - times.mean()
    return float((times * (values - values.mean())).sum() / (times * times).sum())
