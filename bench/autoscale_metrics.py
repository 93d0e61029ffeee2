"""A tiny time-series store that answers the autoscaler's PromQL the way Prometheus would.

Replicas are scraped every `scrape_interval` seconds; `signals(now)` evaluates the same
aggregations as `berth_operator.autoscaling.signals.signal_queries` over the stored samples:
`rate()` from the first and last sample in the window, `histogram_quantile` with linear
interpolation inside a bucket, `avg_over_time`, `deriv` (least squares), `count`, and the age of
the newest sample. A replica that is gone stops having series at once (Prometheus' staleness
markers), and a starting replica has none until it is Ready.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from autoscale_serving import ITL_BUCKETS, TTFT_BUCKETS, Replica

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
    def __init__(self, latency_window_seconds: float, rate_window_seconds: float) -> None:
        self.window_seconds = max(latency_window_seconds, rate_window_seconds)
        self.latency_window_seconds = latency_window_seconds
        self.rate_window_seconds = rate_window_seconds
        self.series: dict[int, list[Scrape]] = {}

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

    def signals(self, now: float) -> Observation:
        latency_windows = [
            [s for s in samples if now - s.time <= self.latency_window_seconds]
            for samples in self.series.values()
        ]
        windows = [
            [s for s in samples if now - s.time <= self.rate_window_seconds]
            for samples in self.series.values()
        ]
        windows = [samples for samples in windows if samples]
        if not windows:
            return MetricsUnavailable("no vllm:num_requests_running series")

        def rate(name: str) -> float:
            total = 0.0
            for samples in windows:
                if len(samples) >= 2:
                    first, last = samples[0], samples[-1]
                    total += (getattr(last, name) - getattr(first, name)) / (last.time - first.time)
            return total

        def bucket_rates(name: str) -> np.ndarray:
            total = 0.0
            for samples in latency_windows:
                if len(samples) >= 2:
                    total = total + (getattr(samples[-1], name) - getattr(samples[0], name))
            return np.asarray(total)

        return Signals(
            ttft_p95_seconds=histogram_quantile(0.95, TTFT_BUCKETS, bucket_rates("ttft_buckets")),
            itl_p95_seconds=histogram_quantile(0.95, ITL_BUCKETS, bucket_rates("itl_buckets")),
            waiting_requests=sum(samples[-1].waiting for samples in windows),
            running_requests=sum(samples[-1].running for samples in windows),
            running_requests_average=sum(float(np.mean([s.running for s in samples])) for samples in windows),
            kv_cache_usage=float(np.mean([np.mean([s.kv_usage for s in samples]) for samples in windows])),
            prompt_tokens_per_second=rate("prompt_tokens"),
            generation_tokens_per_second=rate("generation_tokens"),
            requests_per_second=rate("request_success"),
            waiting_growth_per_second=sum(_slope(samples) for samples in windows),
            reporting_replicas=len(windows),
            serving_replicas_average=sum(len(samples) for samples in windows)
            / max(len(samples) for samples in windows),
            sample_age_seconds=now - max(samples[-1].time for samples in windows),
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
