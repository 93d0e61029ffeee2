"""Prometheus metrics under vLLM's names, so dashboards, KEDA scalers and the operator work unchanged.

Request-level series (latency histograms, token and request counters) are recorded as outputs
stream out of the engine. Engine state (running / waiting requests, KV cache usage, prefix cache
and speculative decoding counters) is read from `engine.stats()` at scrape time by a custom
collector, so a scrape always sees the engine as it is, with no background sampling loop.

Histogram buckets are dense around 50 ms (inter-token SLOs) and 500 ms (time-to-first-token SLOs):
`histogram_quantile` interpolates linearly inside a bucket, so a p95 near either target is read to
within a few milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from berth_runtime.engine.outputs import EngineStats, RequestOutput

LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05, 0.055,
    0.06, 0.065, 0.07, 0.08, 0.09, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS_SECONDS = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5,
    10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
)  # fmt: skip
TOKEN_COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)

StatsSource = Callable[[], EngineStats | None]
ColdStartSource = Callable[[], dict[str, float]]


class ColdStartCollector(Collector):
    """`berth:cold_start_seconds{stage}`: how long each stage of this replica's start took (download,
    load, warm-up), read from the server's record at scrape time; a stage not yet done is absent."""

    def __init__(self, model_name: str, source: ColdStartSource) -> None:
        self._model_name = model_name
        self._source = source

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "berth:cold_start_seconds",
            "Seconds each stage of this replica's start took: download (the fetch init step), load "
            "(weights, and graph capture on CUDA) and warmup.",
            labels=["model_name", "stage"],
        )
        for stage, seconds in sorted(self._source().items()):
            gauge.add_metric([self._model_name, stage], seconds)
        yield gauge


class EngineStatsCollector(Collector):
    """Gauges and cumulative counters read from the engine at scrape time (zeros until it is loaded)."""

    def __init__(self, model_name: str, stats_source: StatsSource) -> None:
        self._model_name = model_name
        self._stats_source = stats_source

    def collect(self) -> Iterator[Metric]:
        stats = self._stats_source() or EngineStats()
        labels = [self._model_name]
        gauges = (
            ("vllm:num_requests_running", "Requests in the running batch.", stats.num_running),
            ("vllm:num_requests_waiting", "Requests waiting for a batch slot.", stats.num_waiting),
            ("vllm:kv_cache_usage_perc", "Share of KV cache blocks in use (1 = 100%).", stats.kv_cache_usage),
        )
        for name, documentation, value in gauges:
            gauge = GaugeMetricFamily(name, documentation, labels=["model_name"])
            gauge.add_metric(labels, float(value))
            yield gauge
        counters = (
            (
                "vllm:prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache.",
                stats.prefix_cache_queries,
            ),
            ("vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", stats.prefix_cache_hits),
            ("vllm:num_preemptions", "Sequences preempted for lack of KV cache.", stats.num_preemptions),
            (
                "vllm:spec_decode_num_draft_tokens",
                "Draft tokens proposed by speculative decoding.",
                stats.spec_decode_num_draft_tokens,
            ),
            (
                "vllm:spec_decode_num_accepted_tokens",
                "Draft tokens accepted by speculative decoding.",
                stats.spec_decode_num_accepted_tokens,
            ),
        )
        for name, documentation, value in counters:
            counter = CounterMetricFamily(name, documentation, labels=["model_name"])
            counter.add_metric(labels, float(value))
            yield counter


class ServerMetrics:
    """The registry /metrics exposes, and the request-level series the server records."""

    def __init__(
        self, model_name: str, stats_source: StatsSource, cold_start_source: ColdStartSource = dict
    ) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time from request arrival to its first generated token.",
            labels,
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        ).labels(model_name)
        self.inter_token_latency = Histogram(
            "vllm:inter_token_latency_seconds",
            "Time between successive outputs of a request.",
            labels,
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        ).labels(model_name)
        self.e2e_request_latency = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Time from request arrival to its last token.",
            labels,
            buckets=REQUEST_LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        ).labels(model_name)
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens",
            "Prompt length of finished requests, in tokens.",
            labels,
            buckets=TOKEN_COUNT_BUCKETS,
            registry=self.registry,
        ).labels(model_name)
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens",
            "Generated tokens of finished requests.",
            labels,
            buckets=TOKEN_COUNT_BUCKETS,
            registry=self.registry,
        ).labels(model_name)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens processed.", labels, registry=self.registry
        ).labels(model_name)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Tokens generated.", labels, registry=self.registry
        ).labels(model_name)
        self._request_success = Counter(
            "vllm:request_success",
            "Finished requests, by finish reason (stop, length, abort).",
            ["model_name", "finished_reason"],
            registry=self.registry,
        )
        self._http_requests = Counter(
            "berth:http_requests",
            "HTTP requests to the inference APIs by API and status code (for error-rate analysis).",
            ["model_name", "api", "status"],
            registry=self.registry,
        )
        self.registry.register(EngineStatsCollector(model_name, stats_source))
        self.registry.register(ColdStartCollector(model_name, cold_start_source))
        ProcessCollector(registry=self.registry)

    def request_finished(self, finish_reason: str) -> None:
        self._request_success.labels(self.model_name, finish_reason).inc()

    def http_request_done(self, api: str, status: int) -> None:
        self._http_requests.labels(self.model_name, api, str(status)).inc()

    def start_request(self) -> RequestTimer:
        return RequestTimer(self)


class RequestTimer:
    """Follows one request's outputs and records its latencies and token counts."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self.arrival = time.monotonic()
        self.first_token_at: float | None = None
        self._last_output_at: float | None = None
        self._prompt_counted = False
        self._finished = False

    def on_output(self, output: RequestOutput) -> None:
        now = time.monotonic()
        metrics = self._metrics
        if output.new_token_ids:
            if self._last_output_at is None:
                metrics.time_to_first_token.observe(now - self.arrival)
                self.first_token_at = now
            else:
                metrics.inter_token_latency.observe(now - self._last_output_at)
            self._last_output_at = now
            metrics.generation_tokens.inc(len(output.new_token_ids))
        if not self._prompt_counted and (output.new_token_ids or output.finished):
            metrics.prompt_tokens.inc(output.prompt_tokens)
            self._prompt_counted = True
        if output.finished:
            self._finish(output.finish_reason or "stop", output.prompt_tokens, output.completion_tokens, now)

    def on_abandoned(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The client went away (or the stream failed) before the request finished."""
        if not self._finished:
            self._finish("abort", prompt_tokens, completion_tokens, time.monotonic())

    def _finish(self, reason: str, prompt_tokens: int, completion_tokens: int, now: float) -> None:
        self._finished = True
        metrics = self._metrics
        metrics.e2e_request_latency.observe(now - self.arrival)
        metrics.request_prompt_tokens.observe(prompt_tokens)
        metrics.request_generation_tokens.observe(completion_tokens)
        metrics.request_finished(reason)
