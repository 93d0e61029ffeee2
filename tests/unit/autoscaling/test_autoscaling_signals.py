"""The PromQL per InferenceDeployment and its parsing into Signals, over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_stub import PrometheusStub, Reply, serve_prometheus_stub, vector

from berth_operator.autoscaling.prometheus import PrometheusClient
from berth_operator.autoscaling.signals import (
    MetricsUnavailable,
    SeriesSelector,
    Signals,
    collect_signals,
    signal_queries,
)

SELECTOR = SeriesSelector(namespace="ml", instance="chat")


@pytest.fixture
def stub() -> Iterator[PrometheusStub]:
    with serve_prometheus_stub() as server:
        yield server


def answer_all(stub: PrometheusStub, values: dict[str, float | str], window: int = 60) -> None:
    queries = signal_queries(SELECTOR, window)
    for name, value in values.items():
        stub.replies[queries[name]] = vector(({}, value))


HEALTHY: dict[str, float | str] = {
    "ttft_p95_seconds": 0.212,
    "itl_p95_seconds": 0.031,
    "waiting_requests": 2,
    "running_requests": 12,
    "running_requests_average": 10,
    "kv_cache_usage": 0.41,
    "prompt_tokens_per_second": 5000,
    "generation_tokens_per_second": 900,
    "requests_per_second": 4,
    "waiting_growth_per_second": -0.5,
    "reporting_replicas": 2,
    "serving_replicas_average": 1.5,
    "sample_age_seconds": 4,
}


def test_queries_select_the_deployment_and_use_vllm_names() -> None:
    queries = signal_queries(SELECTOR, 30)
    matchers = '{namespace="ml",app_kubernetes_io_instance="chat"}'
    assert queries["ttft_p95_seconds"] == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(vllm:time_to_first_token_seconds_bucket{matchers}[30s])))"
    )
    assert queries["itl_p95_seconds"].startswith(
        "histogram_quantile(0.95, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket"
    )
    assert queries["kv_cache_usage"] == f"avg(avg_over_time(vllm:kv_cache_usage_perc{matchers}[30s]))"
    assert queries["prompt_tokens_per_second"] == f"sum(rate(vllm:prompt_tokens_total{matchers}[30s]))"
    assert queries["requests_per_second"] == f"sum(rate(vllm:request_success_total{matchers}[30s]))"
    assert queries["sample_age_seconds"] == f"time() - max(timestamp(vllm:num_requests_running{matchers}))"
    assert all(matchers in promql for promql in queries.values())


def test_label_values_are_escaped() -> None:
    selector = SeriesSelector(namespace='a"b', instance="c\\d", instance_label="instance")
    assert selector.matchers() == '{namespace="a\\"b",instance="c\\\\d"}'


def test_rate_window_below_two_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_window_seconds: 1 must be at least 2 seconds"):
        signal_queries(SELECTOR, 1)


async def test_collect_parses_every_signal(stub: PrometheusStub) -> None:
    answer_all(stub, HEALTHY)
    async with PrometheusClient(stub.url) as client:
        observation = await collect_signals(client, SELECTOR)
    assert observation == Signals(
        ttft_p95_seconds=0.212,
        itl_p95_seconds=0.031,
        waiting_requests=2.0,
        running_requests=12.0,
        running_requests_average=10.0,
        kv_cache_usage=0.41,
        prompt_tokens_per_second=5000.0,
        generation_tokens_per_second=900.0,
        requests_per_second=4.0,
        waiting_growth_per_second=-0.5,
        reporting_replicas=2,
        serving_replicas_average=1.5,
        sample_age_seconds=4.0,
    )
    assert len(stub.queries) == len(HEALTHY)


async def test_no_traffic_gives_no_latency_but_usable_signals(stub: PrometheusStub) -> None:
    answer_all(
        stub, {**HEALTHY, "ttft_p95_seconds": "NaN", "itl_p95_seconds": "NaN", "requests_per_second": 0}
    )
    async with PrometheusClient(stub.url) as client:
        observation = await collect_signals(client, SELECTOR)
    assert isinstance(observation, Signals)
    assert observation.ttft_p95_seconds is None
    assert observation.itl_p95_seconds is None


async def test_no_series_is_metrics_unavailable(stub: PrometheusStub) -> None:
    async with PrometheusClient(stub.url) as client:
        observation = await collect_signals(client, SELECTOR)
    assert isinstance(observation, MetricsUnavailable)
    assert "no vllm:num_requests_running series for ml/chat" in observation.reason


async def test_old_samples_are_stale(stub: PrometheusStub) -> None:
    answer_all(stub, {**HEALTHY, "sample_age_seconds": 95})
    async with PrometheusClient(stub.url) as client:
        observation = await collect_signals(client, SELECTOR, max_sample_age_seconds=45)
    assert observation == MetricsUnavailable(
        "metrics for ml/chat are stale: newest sample is 95s old (limit 45s)"
    )


async def test_an_unreachable_prometheus_is_metrics_unavailable(stub: PrometheusStub) -> None:
    stub.default = Reply(status=503, body="starting")
    async with PrometheusClient(stub.url) as client:
        observation = await collect_signals(client, SELECTOR)
    assert isinstance(observation, MetricsUnavailable)
    assert "HTTP 503" in observation.reason
