"""A live `python -m berth_runtime serve` process on the tiny Llama, driven by the real clients.

`tritonclient.http` (binary tensor data by default) and the `openai` SDK talk to the server as they
would in production; every refusal is checked for its status and JSON message; /metrics is
scraped before and after requests. The server runs with an API key, prefix caching and a separate
metrics port, so those paths are live too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as httpclient
from live_server import LiveServer, free_port
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

API_KEY = "test-key-1234"


def auth() -> dict[str, str]:
    """A fresh header dict per call: tritonclient adds its own headers to the dict it is given."""
    return {"Authorization": f"Bearer {API_KEY}"}


PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("live")
    (directory / "api-key").write_text(API_KEY + "\n")
    metrics_port = free_port()
    live = LiveServer(
        tiny_llama_dir,
        directory / "server.log",
        "--api-key-file", str(directory / "api-key"),
        "--enable-prefix-caching",
        "--metrics-port", str(metrics_port),
        "--served-model-name", "tiny",
    )  # fmt: skip
    live.model_name = "tiny"
    live.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        live.wait_ready()
        yield live
    finally:
        assert live.stop() == 0, live.log()


@pytest.fixture
def triton(server: LiveServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))


@pytest.fixture
def oai(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)


def text_inputs(prompts: list[str], max_tokens: int, binary: bool = True) -> list[httpclient.InferInput]:
    text = httpclient.InferInput("text_input", [len(prompts)], "BYTES")
    text.set_data_from_numpy(np.array([p.encode() for p in prompts], dtype=object), binary_data=binary)
    limit = httpclient.InferInput("max_tokens", [1], "INT32")
    limit.set_data_from_numpy(np.array([max_tokens], dtype=np.int32), binary_data=binary)
    return [text, limit]


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in values.items() if sample == name)


# ---- KServe v2 through tritonclient ---------------------------------------------------------------


def test_tritonclient_health_and_metadata(
    server: LiveServer, triton: httpclient.InferenceServerClient
) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("tiny", headers=auth())
    metadata = triton.get_model_metadata("tiny", headers=auth())
    assert metadata["name"] == "tiny" and metadata["versions"] == ["1"]
    assert {"name": "text_input", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
    assert metadata["outputs"] == [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}]
    assert "binary_tensor_data" in triton.get_server_metadata(headers=auth())["extensions"]
    assert triton.get_model_repository_index(headers=auth()) == [
        {"name": "tiny", "version": "1", "state": "READY"}
    ]
    assert triton.get_model_config("tiny", headers=auth())["input"][0]["name"] == "text_input"


def test_tritonclient_infer_text_binary_and_json_agree_with_openai(
    triton: httpclient.InferenceServerClient, oai: openai.OpenAI
) -> None:
    parameters = {"temperature": 0, "ignore_eos": True}
    binary = triton.infer("tiny", text_inputs([PROMPT], 8), parameters=parameters, headers=auth())
    assert binary.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0, (
        "binary output by default"
    )
    binary_text = as_text(binary.as_numpy("text_output")[0])
    outputs = [httpclient.InferRequestedOutput("text_output", binary_data=False)]
    json_result = triton.infer(
        "tiny", text_inputs([PROMPT], 8, binary=False), outputs=outputs, parameters=parameters, headers=auth()
    )
    assert "data" in json_result.get_response()["outputs"][0]
    assert as_text(json_result.as_numpy("text_output")[0]) == binary_text
    completion = oai.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
    )
    assert completion.choices[0].text == binary_text
    assert completion.usage is not None and completion.usage.completion_tokens == 8


def test_tritonclient_batch_of_prompts_returns_one_text_each(
    triton: httpclient.InferenceServerClient,
) -> None:
    prompts = [PROMPT, "Kubernetes schedules pods", PROMPT]
    result = triton.infer("tiny", text_inputs(prompts, 5), parameters={"temperature": 0}, headers=auth())
    texts = [as_text(value) for value in result.as_numpy("text_output")]
    assert len(texts) == 3 and texts[0] == texts[2]


def test_tritonclient_statistics_count_inferences(triton: httpclient.InferenceServerClient) -> None:
    before = triton.get_inference_statistics("tiny", headers=auth())["model_stats"][0]["inference_count"]
    triton.infer("tiny", text_inputs([PROMPT], 2), headers=auth())
    after = triton.get_inference_statistics("tiny", headers=auth())["model_stats"][0]
    assert after["inference_count"] == before + 1
    assert after["inference_stats"]["success"]["ns"] > 0


def test_triton_generate_and_generate_stream(server: LiveServer) -> None:
    body = {"text_input": PROMPT, "parameters": {"max_tokens": 6, "temperature": 0, "ignore_eos": True}}
    reply = httpx.post(f"{server.url}/v2/models/tiny/generate", json=body, headers=auth(), timeout=60)
    assert reply.status_code == 200 and reply.json()["model_name"] == "tiny"
    events = []
    with httpx.stream(
        "POST", f"{server.url}/v2/models/tiny/generate_stream", json=body, headers=auth(), timeout=60
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) >= 2
    streamed = "".join(httpx.Response(200, content=event).json()["text_output"] for event in events)
    assert streamed == reply.json()["text_output"]


def test_tritonclient_errors_carry_the_message(triton: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="model 'nope' does not exist"):
        triton.infer("nope", text_inputs([PROMPT], 2), headers=auth())
    with pytest.raises(InferenceServerException, match="invalid value for 'top_p': 5"):
        triton.infer("tiny", text_inputs([PROMPT], 2), parameters={"top_p": 5}, headers=auth())
    with pytest.raises(InferenceServerException, match="unknown parameter 'temprature'"):
        triton.infer("tiny", text_inputs([PROMPT], 2), parameters={"temprature": 0.5}, headers=auth())


# ---- OpenAI through the openai SDK ----------------------------------------------------------------


def test_openai_models_and_completion(oai: openai.OpenAI) -> None:
    assert [model.id for model in oai.models.list()] == ["tiny"]
    completion = oai.completions.create(model="tiny", prompt=[PROMPT, "Paged KV"], max_tokens=4, n=2, seed=3)
    assert sorted(choice.index for choice in completion.choices) == [0, 1, 2, 3]
    assert all(choice.finish_reason in ("stop", "length") for choice in completion.choices)
    assert completion.usage is not None and completion.usage.completion_tokens <= 16


def test_openai_streamed_chat_matches_the_unstreamed_answer(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "What does a paged KV cache store?"}]
    extra = {"ignore_eos": True}
    whole = oai.chat.completions.create(
        model="tiny", messages=messages, max_tokens=6, temperature=0, extra_body=extra
    )
    chunks = list(
        oai.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert content == whole.choices[0].message.content
    finish = [
        chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert finish == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert whole.usage is not None and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_sse_stream_ends_with_done(server: LiveServer) -> None:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 3, "stream": True}
    with httpx.stream(
        "POST", f"{server.url}/v1/completions", json=body, headers=auth(), timeout=60
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "prompt": "x", **fields}


def infer_body(name: str = "text_input", shape: int = 1, text: str = "x") -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [shape], "data": [text]}]}


LONG_TEXT = "word " * 600


@pytest.mark.parametrize(
    ("path", "body", "status", "message", "param"),
    [
        ("/v1/completions", completion(model="nope"), 404, "model 'nope' does not exist", "model"),
        ("/v1/completions", completion(temperature=-1), 400, "'temperature'", "temperature"),
        ("/v1/completions", completion(max_tokens="many"), 400, "'max_tokens'", "max_tokens"),
        ("/v1/completions", completion(presence_penalty=1), 400, "not supported", "presence_penalty"),
        ("/v1/completions", completion(prompt=LONG_TEXT), 400, "max_model_len", "prompt"),
        ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400, "'messages'", "messages"),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": LONG_TEXT}]},
            400,
            "max_model_len",
            "messages",
        ),
    ],
)
def test_openai_errors_are_json_with_status_and_param(
    server: LiveServer, path: str, body: dict[str, Any], status: int, message: str, param: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body, headers=auth(), timeout=60)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"]
    assert error["param"] == param


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", infer_body(), 404, "model 'nope' does not exist"),
        ("/v2/models/tiny/infer", infer_body(name="prompt"), 400, "unknown input 'prompt'"),
        ("/v2/models/tiny/infer", infer_body(shape=2), 400, "needs 2 element(s)"),
        ("/v2/models/tiny/infer", infer_body(text=LONG_TEXT), 400, "max_model_len"),
        ("/v2/models/tiny/generate", {"text_input": "x", "max_tokens": 0}, 400, "'max_tokens'"),
        ("/v2/models/tiny/generate", {"text_input": 5}, 400, "'text_input' must be a string"),
    ],
)
def test_kserve_errors_are_json_with_status(
    server: LiveServer, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body, headers=auth(), timeout=60)
    assert response.status_code == status
    assert message in response.json()["error"]


# ---- API key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}])
def test_requests_without_the_right_key_get_401(server: LiveServer, headers: dict[str, str]) -> None:
    for path, api_shape in (("/v1/models", dict), ("/v2/models/tiny", str)):
        response = httpx.get(f"{server.url}{path}", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert isinstance(error, api_shape)
        assert "API key" in (error["message"] if isinstance(error, dict) else error)


def test_health_and_metrics_stay_open_without_a_key(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def test_openai_sdk_with_a_wrong_key_raises_authentication_error(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


# ---- /metrics ----------------------------------------------------------------------------------------

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


def test_metrics_exist_with_the_model_label_on_both_ports(server: LiveServer) -> None:
    for url in (server.url, f"http://127.0.0.1:{server.metrics_port}"):  # type: ignore[attr-defined]
        text = httpx.get(f"{url}/metrics").text
        for name in ISSUE_METRICS:
            assert f"{name}{{" in text or f"{name}_bucket{{" in text, name
        assert 'model_name="tiny"' in text


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


# ---- generation settings reach the engine ----------------------------------------------------------


def test_stop_strings_from_either_api_end_the_text_before_them(
    triton: httpclient.InferenceServerClient, oai: openai.OpenAI
) -> None:
    settings = {"temperature": 0, "ignore_eos": True}
    free = (
        oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=16, extra_body=settings)
        .choices[0]
        .text
    )
    candidates = [c for c in free[2:] if c.isprintable() and c != "\ufffd" and not c.isspace()]
    assert candidates, f"no usable stop character in {free!r}"
    stop = candidates[0]
    expected = free[: free.index(stop)]
    stopped = oai.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=16, stop=[stop], extra_body=settings
    )
    assert stopped.choices[0].text == expected
    assert stopped.choices[0].finish_reason == "stop"
    result = triton.infer(
        "tiny", text_inputs([PROMPT], 16), parameters={**settings, "stop": stop}, headers=auth()
    )
    assert as_text(result.as_numpy("text_output")[0]) == expected


def test_logprobs_have_one_entry_per_generated_token(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=4, logprobs=3, temperature=0, extra_body={"ignore_eos": True}
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.token_logprobs is not None and logprobs.top_logprobs is not None
    assert len(logprobs.token_logprobs) == 4
    assert all(value <= 0 for value in logprobs.token_logprobs)
    # top_logprobs is keyed by token text: alternatives that decode alike (partial UTF-8) merge.
    assert all(1 <= len(top) <= 3 for top in logprobs.top_logprobs)
    assert max(len(top) for top in logprobs.top_logprobs) == 3
    chat = oai.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 3
    assert all(len(entry.top_logprobs) == 2 for entry in content)
    assert content[0].top_logprobs[0].logprob >= content[0].top_logprobs[1].logprob


def test_echo_prepends_the_prompt(oai: openai.OpenAI) -> None:
    settings = {"temperature": 0, "ignore_eos": True}
    plain = oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=3, extra_body=settings)
    echoed = oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=3, echo=True, extra_body=settings)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text


def test_streamed_logprobs_cover_every_token_with_growing_offsets(server: LiveServer) -> None:
    body = {
        "model": "tiny",
        "prompt": PROMPT,
        "max_tokens": 5,
        "logprobs": 1,
        "stream": True,
        "temperature": 0,
    }
    body["ignore_eos"] = True
    with httpx.stream(
        "POST", f"{server.url}/v1/completions", json=body, headers=auth(), timeout=60
    ) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    blocks = [chunk["choices"][0]["logprobs"] for chunk in chunks if chunk["choices"][0]["logprobs"]]
    assert sum(len(block["tokens"]) for block in blocks) == 5
    offsets = [offset for block in blocks for offset in block["text_offset"]]
    assert offsets[0] == 0 and offsets == sorted(offsets)
