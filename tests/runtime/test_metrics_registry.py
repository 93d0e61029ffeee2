"""The metrics registry: vLLM's names and label, scrape-time engine gauges, and request recording."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from berth_runtime.engine.outputs import EngineStats, RequestOutput
from berth_runtime.server.metrics import LATENCY_BUCKETS_SECONDS, ServerMetrics

ISSUE_METRICS = {
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:request_success": "counter",
    "vllm:spec_decode_num_draft_tokens": "counter",
    "vllm:spec_decode_num_accepted_tokens": "counter",
}


def samples(metrics: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def output(
    new_tokens: int, completion_tokens: int, finished: bool = False, reason: str | None = None
) -> RequestOutput:
    return RequestOutput(
        request_id="r",
        new_token_ids=list(range(new_tokens)),
        new_text="x" * new_tokens,
        finished=finished,
        finish_reason=reason,
        prompt_tokens=7,
        completion_tokens=completion_tokens,
    )


def test_every_metric_of_the_issue_is_exposed_with_its_type_and_model_label() -> None:
    metrics = ServerMetrics("tiny", lambda: None)
    text = generate_latest(metrics.registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in ISSUE_METRICS.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert 'vllm:prompt_tokens_total{model_name="tiny"} 0.0' in text
    assert 'vllm:num_requests_running{model_name="tiny"} 0.0' in text


def test_buckets_resolve_a_p95_near_50ms_and_500ms() -> None:
    for target in (0.05, 0.5):
        assert target in LATENCY_BUCKETS_SECONDS
        index = LATENCY_BUCKETS_SECONDS.index(target)
        below, above = LATENCY_BUCKETS_SECONDS[index - 1], LATENCY_BUCKETS_SECONDS[index + 1]
        assert (target - below) / target <= 0.1 + 1e-9 and (above - target) / target <= 0.1 + 1e-9


def test_engine_gauges_are_read_at_scrape_time() -> None:
    stats = {"current": EngineStats(num_running=3, num_waiting=2, kv_cache_usage=0.25, prefix_cache_hits=64)}
    metrics = ServerMetrics("tiny", lambda: stats["current"])
    label = (("model_name", "tiny"),)
    first = samples(metrics)
    assert first[("vllm:num_requests_running", label)] == 3
    assert first[("vllm:num_requests_waiting", label)] == 2
    assert first[("vllm:kv_cache_usage_perc", label)] == 0.25
    assert first[("vllm:prefix_cache_hits_total", label)] == 64
    stats["current"] = EngineStats(num_running=1, prefix_cache_queries=128, prefix_cache_hits=96)
    second = samples(metrics)
    assert second[("vllm:num_requests_running", label)] == 1
    assert second[("vllm:prefix_cache_queries_total", label)] == 128


def test_a_request_moves_latency_token_and_success_series() -> None:
    metrics = ServerMetrics("tiny", lambda: None)
    timer = metrics.start_request()
    timer.on_output(output(1, 1))
    timer.on_output(output(2, 3))
    timer.on_output(output(1, 4, finished=True, reason="length"))
    values = samples(metrics)
    label = (("model_name", "tiny"),)
    assert values[("vllm:time_to_first_token_seconds_count", label)] == 1
    assert values[("vllm:inter_token_latency_seconds_count", label)] == 2
    assert values[("vllm:e2e_request_latency_seconds_count", label)] == 1
    assert values[("vllm:prompt_tokens_total", label)] == 7
    assert values[("vllm:generation_tokens_total", label)] == 4
    assert (
        values[("vllm:request_success_total", (("finished_reason", "length"), ("model_name", "tiny")))] == 1
    )


def test_an_abandoned_request_counts_as_abort_once() -> None:
    metrics = ServerMetrics("tiny", lambda: None)
    timer = metrics.start_request()
    timer.on_output(output(1, 1))
    timer.on_abandoned(7, 1)
    timer.on_abandoned(7, 1)
    values = samples(metrics)
    assert values[("vllm:request_success_total", (("finished_reason", "abort"), ("model_name", "tiny")))] == 1
