"""What the autoscaler observes about one InferenceDeployment, and the PromQL that observes it.

The runtime exports vLLM's metric names (`vllm:time_to_first_token_seconds`, ...), so these queries
work against any vLLM-compatible server too. Series are selected by the labels Prometheus attaches
to the pods' targets: by default `namespace` and `app_kubernetes_io_instance` (what a
`labelmap` of `__meta_kubernetes_pod_label_(.+)` makes of the pod label
`app.kubernetes.io/instance`). Demand is measured in tokens, not requests.

Staleness is detected from the data, not assumed: the age of the newest sample of the pods'
`vllm:num_requests_running` gauge must stay under a limit; no series at all, an unreachable
Prometheus, or a sample too old each yield `MetricsUnavailable`, on which the policy holds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from berth_operator.autoscaling.errors import PrometheusError
from berth_operator.autoscaling.samples import InstantQuerier

DEFAULT_RATE_WINDOW_SECONDS = 60
"""Window of `rate()` and `avg_over_time()`, seconds; default 60 (six 10 s scrapes)."""

DEFAULT_MAX_SAMPLE_AGE_SECONDS = 60.0
"""Newest sample older than this (seconds) means stale metrics; default 60."""


@dataclass(frozen=True)
class Signals:
    """One observation of a deployment's serving, aggregated over its pods. Latencies are None when
    no request finished in the window (a quantile of nothing), which is not a breach."""

    ttft_p95_seconds: float | None
    itl_p95_seconds: float | None
    waiting_requests: float
    running_requests: float
    running_requests_average: float
    kv_cache_usage: float | None
    prompt_tokens_per_second: float
    generation_tokens_per_second: float
    requests_per_second: float
    waiting_growth_per_second: float
    reporting_replicas: int
    serving_replicas_average: float
    """Replicas reporting, averaged over the rate window: a replica that appeared halfway through
    counts one half, so per-replica rates are not diluted by newcomers."""
    sample_age_seconds: float


@dataclass(frozen=True)
class MetricsUnavailable:
    """No usable observation this interval, and why (in words, with the numbers)."""

    reason: str


Observation = Signals | MetricsUnavailable


@dataclass(frozen=True)
class SeriesSelector:
    """Which series belong to one InferenceDeployment: label names as Prometheus stores them."""

    namespace: str
    instance: str
    namespace_label: str = "namespace"
    instance_label: str = "app_kubernetes_io_instance"

    def matchers(self) -> str:
        return (
            f'{{{self.namespace_label}="{_escape(self.namespace)}",'
            f'{self.instance_label}="{_escape(self.instance)}"}}'
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def signal_queries(
    selector: SeriesSelector, rate_window_seconds: int = DEFAULT_RATE_WINDOW_SECONDS
) -> dict[str, str]:
    """The PromQL for every signal, by signal name. Every query aggregates to at most one series."""
    if rate_window_seconds < 2:
        raise ValueError(f"rate_window_seconds: {rate_window_seconds!r} must be at least 2 seconds")
    match = selector.matchers()
    window = f"[{rate_window_seconds}s]"

    def p95(histogram: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{match}{window})))"

    return {
        "ttft_p95_seconds": p95("vllm:time_to_first_token_seconds"),
        "itl_p95_seconds": p95("vllm:inter_token_latency_seconds"),
        "waiting_requests": f"sum(vllm:num_requests_waiting{match})",
        "running_requests": f"sum(vllm:num_requests_running{match})",
        "running_requests_average": f"sum(avg_over_time(vllm:num_requests_running{match}{window}))",
        "kv_cache_usage": f"avg(avg_over_time(vllm:kv_cache_usage_perc{match}{window}))",
        "prompt_tokens_per_second": f"sum(rate(vllm:prompt_tokens_total{match}{window}))",
        "generation_tokens_per_second": f"sum(rate(vllm:generation_tokens_total{match}{window}))",
        "requests_per_second": f"sum(rate(vllm:request_success_total{match}{window}))",
        "waiting_growth_per_second": f"sum(deriv(vllm:num_requests_waiting{match}{window}))",
        "reporting_replicas": f"count(vllm:num_requests_running{match})",
        "serving_replicas_average": (
            f"sum(count_over_time(vllm:num_requests_running{match}{window})) "
            f"/ max(count_over_time(vllm:num_requests_running{match}{window}))"
        ),
        "sample_age_seconds": f"time() - max(timestamp(vllm:num_requests_running{match}))",
    }


async def collect_signals(
    querier: InstantQuerier,
    selector: SeriesSelector,
    *,
    rate_window_seconds: int = DEFAULT_RATE_WINDOW_SECONDS,
    max_sample_age_seconds: float = DEFAULT_MAX_SAMPLE_AGE_SECONDS,
    at: float | None = None,
) -> Observation:
    """Run every signal query (concurrently, at one evaluation time) and parse the answers."""
    queries = signal_queries(selector, rate_window_seconds)
    try:
        results = await asyncio.gather(*(querier.query(promql, at) for promql in queries.values()))
        values = {name: result.single_value() for name, result in zip(queries, results, strict=True)}
    except PrometheusError as error:
        return MetricsUnavailable(str(error))
    return parse_signals(values, selector, max_sample_age_seconds)


def parse_signals(
    values: dict[str, float | None], selector: SeriesSelector, max_sample_age_seconds: float
) -> Observation:
    """Turn per-signal values (None: empty result or NaN) into `Signals`, or say why they are unusable."""
    who = f"{selector.namespace}/{selector.instance}"
    reporting = values.get("reporting_replicas")
    age = values.get("sample_age_seconds")
    if not reporting or age is None:
        return MetricsUnavailable(f"no vllm:num_requests_running series for {who} {selector.matchers()}")
    if age > max_sample_age_seconds:
        return MetricsUnavailable(
            f"metrics for {who} are stale: newest sample is {age:.0f}s old "
            f"(limit {max_sample_age_seconds:.0f}s)"
        )

    def number(name: str) -> float:
        value = values.get(name)
        return 0.0 if value is None else max(value, 0.0)

    return Signals(
        ttft_p95_seconds=values.get("ttft_p95_seconds"),
        itl_p95_seconds=values.get("itl_p95_seconds"),
        waiting_requests=number("waiting_requests"),
        running_requests=number("running_requests"),
        running_requests_average=number("running_requests_average"),
        kv_cache_usage=values.get("kv_cache_usage"),
        prompt_tokens_per_second=number("prompt_tokens_per_second"),
        generation_tokens_per_second=number("generation_tokens_per_second"),
        requests_per_second=number("requests_per_second"),
        waiting_growth_per_second=values.get("waiting_growth_per_second") or 0.0,
        reporting_replicas=round(reporting),
        serving_replicas_average=values.get("serving_replicas_average") or float(round(reporting)),
        sample_age_seconds=max(age, 0.0),
    )
