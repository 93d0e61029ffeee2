"""The live server's /metrics, scraped before and after real requests: the vLLM-named series exist
with the model label on both ports, and their values move as requests complete. The server
fixture is in live_api_fixtures.py."""

from __future__ import annotations

import httpx
import openai
from live_api import PROMPT
from live_server import LiveServer
from prometheus_client.parser import text_string_to_metric_families

pytest_plugins = ["live_api_fixtures"]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in values.items() if sample == name)


ISSUE_METRICS = [
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:request_success_total",
]


def test_metrics_exist_with_the_model_label_on_both_ports(server: LiveServer, oai: openai.OpenAI) -> None:
    # A labelled series shows once it has a sample: one completed request gives every one of them.
    oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=2)
    for url in (server.url, f"http://127.0.0.1:{server.metrics_port}"):  # type: ignore[attr-defined]
        text = httpx.get(f"{url}/metrics").text
        for name in ISSUE_METRICS:
            assert f"{name}{{" in text or f"{name}_bucket{{" in text, name
        assert 'model_name="tiny"' in text


def test_both_ports_keep_vllm_names_whatever_format_the_scraper_asks_for(server: LiveServer) -> None:
    # What Prometheus sends: an OpenMetrics exposition with underscore escaping would store
    # vllm:num_requests_running as vllm_num_requests_running, and no vLLM-named query would match.
    accept = (
        "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,"
        "text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
    )
    for url in (server.url, f"http://127.0.0.1:{server.metrics_port}"):  # type: ignore[attr-defined]
        response = httpx.get(f"{url}/metrics", headers={"Accept": accept})
        assert response.headers["content-type"].startswith("text/plain"), url
        assert "vllm:num_requests_running{" in response.text, url
        assert "vllm_num_requests_running" not in response.text, url


def test_metric_values_move_as_requests_complete(server: LiveServer, oai: openai.OpenAI) -> None:
    long_prompt = " ".join(["Prefix caching reuses blocks whose tokens were already computed."] * 6)
    oai.completions.create(model="tiny", prompt=long_prompt, max_tokens=2, temperature=0)
    before = scrape(server.url)
    completion = oai.completions.create(
        model="tiny", prompt=long_prompt, max_tokens=5, temperature=0, extra_body={"ignore_eos": True}
    )
    after = scrape(server.url)
    assert completion.usage is not None
    assert series(after, "vllm:generation_tokens_total") - series(before, "vllm:generation_tokens_total") == 5
    assert series(after, "vllm:prompt_tokens_total") - series(before, "vllm:prompt_tokens_total") == (
        completion.usage.prompt_tokens
    )
    assert series(after, "vllm:request_success_total") == series(before, "vllm:request_success_total") + 1
    for histogram in ("time_to_first_token", "e2e_request_latency"):
        name = f"vllm:{histogram}_seconds_count"
        assert series(after, name) == series(before, name) + 1
    itl = "vllm:inter_token_latency_seconds_count"
    assert series(after, itl) >= series(before, itl) + 4
    queries = "vllm:prefix_cache_queries_total"
    hits = "vllm:prefix_cache_hits_total"
    assert series(after, queries) > series(before, queries)
    assert series(after, hits) > series(before, hits), "the repeated prompt hit the prefix cache"
