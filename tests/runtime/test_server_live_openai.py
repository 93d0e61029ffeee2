"""OpenAI on the live server through the `openai` SDK: completions, chat and their streams, every
refusal's status, message and param, and the generation settings (stop strings, logprobs, echo)
reaching the engine. The server fixture is in live_api_fixtures.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import tritonclient.http as httpclient
from live_api import LONG_TEXT, PROMPT, as_text, auth, text_inputs
from live_server import LiveServer

pytest_plugins = ["live_api_fixtures"]


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


@pytest.mark.parametrize(
    ("path", "body", "status", "message", "param"),
    [
        ("/v1/completions", completion(model="nope"), 404, "model 'nope' does not exist", "model"),
        ("/v1/completions", completion(temperature=-1), 400, "'temperature'", "temperature"),
        ("/v1/completions", completion(max_tokens="many"), 400, "'max_tokens'", "max_tokens"),
        (
            "/v1/completions",
            completion(presence_penalty=3),
            400,
            "accepted: a number in [-2, 2]",
            "presence_penalty",
        ),
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
