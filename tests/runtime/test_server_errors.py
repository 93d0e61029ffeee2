"""Request validation and error shapes, in-process against the app with a fake engine.

The live tests cover the errors a real engine raises; these cover the HTTP layer's own refusals
(malformed bodies, unsupported options, unknown routes) and what it hands the engine when a
request is valid.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_engine import FakeEngine

from berth_runtime.config import RuntimeConfig
from berth_runtime.server.app import create_app
from berth_runtime.server.context import ServingContext
from berth_runtime.server.lifecycle import Phase, ServerState
from berth_runtime.server.metrics import ServerMetrics
from berth_runtime.server.statistics import ModelStatistics


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def http(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    config = RuntimeConfig(model=str(tmp_path / "tiny"), device="cpu")
    state = ServerState(config, engine_factory=lambda _: engine)  # type: ignore[arg-type,return-value]
    context = ServingContext(
        config, state, ServerMetrics("tiny", state.engine_stats), ModelStatistics("tiny")
    )
    await state.load()
    engine.requests.clear()
    transport = httpx.ASGITransport(app=create_app(context, api_key=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({}, "prompt", "'prompt' is required"),
        ({"prompt": {"text": "x"}}, "prompt", "accepted types: list[int], list[list[int]], list[str], str"),
        ({"prompt": "x", "n": 99}, "n", "less than or equal to 16"),
        (
            {"prompt": "x", "logit_bias": {"5": 101}},
            "logit_bias.5",
            "101.0; accepted: a number in [-100, 100]",
        ),
        (
            {"prompt": "x", "logit_bias": {"five": 1}},
            "logit_bias",
            "'five'; accepted: a mapping of token ids",
        ),
        ({"prompt": "x", "presence_penalty": 2.5}, "presence_penalty", "2.5; accepted: a number in [-2, 2]"),
        ({"prompt": "x", "repetition_penalty": 0}, "repetition_penalty", "accepted: a number > 0"),
        ({"prompt": "x", "min_p": 1.5}, "min_p", "1.5; accepted: a number in [0, 1]"),
        ({"prompt": "x", "suffix": "!"}, "suffix", "not supported"),
        (
            {"prompt": "x", "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed with stream",
        ),
        ({"prompt": [5, 500]}, "prompt", "within 0..99"),
        ({"prompt": "x", "top_p": 0}, "top_p", "accepted: a number in (0, 1]"),
        ({"prompt": "x", "min_tokens": 5, "max_tokens": 2}, "min_tokens", "<= max_tokens"),
    ],
)
async def test_completion_refusals_name_the_parameter(
    http: httpx.AsyncClient, body: dict[str, Any], param: str, message: str
) -> None:
    response = await http.post("/v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", "'user'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages.0.content",
            "image_url",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools.0.function",
            "must be an object",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
            "top_logprobs",
            "needs 'logprobs'",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}},
            "response_format.type",
            "'yaml' is not supported",
        ),
    ],
)
async def test_chat_refusals_name_the_parameter(
    http: httpx.AsyncClient, body: dict[str, Any], param: str, message: str
) -> None:
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert message in response.json()["error"]["message"]


async def test_malformed_json_is_a_400_in_both_apis(http: httpx.AsyncClient) -> None:
    openai_error = await http.post(
        "/v1/completions", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert openai_error.status_code == 400 and "not valid JSON" in openai_error.json()["error"]["message"]
    kserve_error = await http.post("/v2/models/tiny/generate", content=b"{oops")
    assert kserve_error.status_code == 400 and "not valid JSON" in kserve_error.json()["error"]
    infer_error = await http.post("/v2/models/tiny/infer", content=b"{oops")
    assert infer_error.status_code == 400 and "not valid JSON" in infer_error.json()["error"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"model": "tiny", "prompt": "hi"}', {"content-type": "text/plain"}),  # curl -d without -H
        (b"[1, 2]", {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
    ],
)
async def test_a_body_that_is_not_a_json_object_says_what_is_expected(
    http: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    response = await http.post("/v1/completions", content=content, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == (
        "the request body must be a JSON object sent with Content-Type: application/json"
    )
    assert error["param"] is None


async def test_unknown_routes_methods_and_versions_are_json(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v3/anything")
    assert missing.status_code == 404 and "no route GET /v3/anything" in missing.json()["error"]
    wrong_method = await http.get("/v1/completions")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["message"]
    version = await http.get("/v2/models/tiny/versions/2")
    assert version.status_code == 404 and "has no version '2'" in version.json()["error"]
    assert (await http.get("/v2/models/tiny/versions/1")).status_code == 200


async def test_kserve_settings_from_parameters_tensors_and_sampling_parameters(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = {
        "parameters": {"sampling_parameters": '{"temperature": 0, "top_k": 5}', "max_tokens": 3},
        "inputs": [
            {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["hello"]},
            {"name": "stop", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
            {"name": "seed", "datatype": "INT64", "shape": [1], "data": [11]},
        ],
    }
    response = await http.post("/v2/models/tiny/infer", json=body)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == ["ok"]
    (_, prompt, params) = engine.requests[-1]
    assert prompt == engine.tokenizer.encode("hello")
    assert (params.temperature, params.top_k, params.max_tokens, params.stop, params.seed) == (
        0.0,
        5,
        3,
        ("a", "b"),
        11,
    )
    bad = await http.post(
        "/v2/models/tiny/infer", json={**body, "parameters": {"sampling_parameters": '{"beam_width": 2}'}}
    )
    assert bad.status_code == 400 and "unknown key 'beam_width'" in bad.json()["error"]


async def test_max_tokens_is_capped_to_the_context_left(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    prompt = "x" * 60  # the fake engine's context is 64 tokens
    response = await http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 50})
    assert response.status_code == 200
    assert engine.requests[-1][2].max_tokens == 4
    chat = await http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200
    chat_prompt = engine.requests[-1][1]
    assert engine.requests[-1][2].max_tokens == 64 - len(chat_prompt), (
        "chat without max_tokens may use the rest"
    )


async def test_n_choices_get_distinct_seeds(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    response = await http.post("/v1/completions", json={"prompt": ["a", "b"], "n": 2, "seed": 40})
    assert [choice["index"] for choice in response.json()["choices"]] == [0, 1, 2, 3]
    assert [params.seed for _, _, params in engine.requests] == [40, 41, 40, 41]
    assert response.json()["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


async def test_engine_failure_mid_request_is_a_json_500(tmp_path: Path) -> None:
    engine = FakeEngine(fail_generation=True)
    config = RuntimeConfig(model=str(tmp_path / "tiny"), device="cpu")
    state = ServerState(config, engine_factory=lambda _: engine)  # type: ignore[arg-type,return-value]
    state.engine = engine  # type: ignore[assignment]
    state.phase = Phase.READY
    context = ServingContext(
        config, state, ServerMetrics("tiny", state.engine_stats), ModelStatistics("tiny")
    )
    transport = httpx.ASGITransport(app=create_app(context, api_key=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/v1/completions", json={"prompt": "x"})
    assert response.status_code == 500
    assert "the device fell over" in response.json()["error"]["message"]
    assert context.statistics.to_json()["model_stats"][0]["inference_stats"]["fail"]["count"] == 1


async def test_oversized_bodies_are_refused_with_413(http: httpx.AsyncClient) -> None:
    oversized = b'{"prompt": "' + b"x" * (32 * 1024 * 1024) + b'"}'
    declared = await http.post(
        "/v1/completions", content=oversized, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413 and "exceeds" in declared.json()["error"]["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(oversized), 1024 * 1024):
            yield oversized[start : start + 1024 * 1024]

    streamed = await http.post("/v2/models/tiny/generate", content=chunks())
    assert streamed.status_code == 413 and "exceeds" in streamed.json()["error"]


async def test_streams_of_several_choices_are_interleaved_by_index(http: httpx.AsyncClient) -> None:
    body = {"prompt": ["a", "b"], "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    async with http.stream("POST", "/v1/completions", json=body) as response:
        events = [line.removeprefix("data: ") for line in [x async for x in response.aiter_lines()] if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    finished = sorted(
        c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    )
    assert finished == [0, 1, 2, 3]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    chat = {"messages": [{"role": "user", "content": "hi"}], "n": 3, "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=chat) as response:
        lines = [line.removeprefix("data: ") for line in [x async for x in response.aiter_lines()] if line]
    roles = [json.loads(line)["choices"][0] for line in lines[:-1]]
    assert sorted(c["index"] for c in roles if c["delta"].get("role") == "assistant") == [0, 1, 2]
    assert "".join(c["delta"].get("content", "") for c in roles) == "okokok"
