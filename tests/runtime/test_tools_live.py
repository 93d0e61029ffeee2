"""Function calling on the live server through the `openai` SDK, on the tiny random Llama given a
Hermes-style chat template (tools in the system turn, `<tool_call>` blocks, `<tool_response>`
turns): tool_choice `required` and a named function yield calls whose arguments validate against the
function's schema over many seeds; streamed calls, accumulated by the SDK's stream helper, equal the
non-streamed ones for the same seed; `none` returns no calls; a call's result sent back as a tool
message is rendered into the next prompt; malformed tools and unknown names are 400s naming the field.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from live_server import LiveServer

from berth_runtime.server.openai_protocol import ChatCompletionRequest
from berth_runtime.tokenizer import Tokenizer

HERMES_TEMPLATE = (
    # the tiny BPE spells most characters byte by byte: the tools are listed by name only
    "{% if tools %}<|im_start|>system\n<tools>{% for tool in tools %}{{ tool.function.name }} {% endfor %}"
    "</tools><|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n"
    "{% for call in message.tool_calls %}<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}<|im_end|>\n"
    "{% elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n"
    "</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 6},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
CLOCK = {
    "type": "object",
    "properties": {"zone": {"enum": ["utc", "cet"]}},
    "required": ["zone"],
    "additionalProperties": False,  # else the random model writes extra keys until max_tokens
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "weather", "description": "Forecast", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "clock", "parameters": CLOCK}},
]
SCHEMAS = {"weather": WEATHER, "clock": CLOCK}
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture(scope="module")
def hermes_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-hermes") / "model"
    shutil.copytree(tiny_llama_dir, directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "chat_template": HERMES_TEMPLATE}))
    return directory


@pytest.fixture(scope="module")
def oai(hermes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    log = tmp_path_factory.mktemp("tools-live") / "server.log"
    live = LiveServer(hermes_dir, log, "--served-model-name", "tiny")
    try:
        live.wait_ready()
        yield openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
    finally:
        assert live.stop() == 0, live.log()


def _calls(oai: openai.OpenAI, seed: int, **fields: Any) -> tuple[str | None, list[tuple[str, str]]]:
    reply = oai.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=TOOLS, seed=seed, **{"max_tokens": 160, **fields}
    )
    choice = reply.choices[0]
    calls = choice.message.tool_calls or []
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
    return choice.finish_reason, [(call.function.name, call.function.arguments) for call in calls]


def test_required_calls_validate_over_many_seeds(oai: openai.OpenAI) -> None:
    called = 0
    for seed in range(8):
        finish, calls = _calls(oai, seed, tool_choice="required", parallel_tool_calls=False)
        if finish == "tool_calls":
            called += 1
            assert len(calls) == 1
            name, arguments = calls[0]
            jsonschema.validate(json.loads(arguments), SCHEMAS[name])
    assert called >= 6


def test_named_function_is_the_one_called(oai: openai.OpenAI) -> None:
    called = 0
    for seed in range(8):
        finish, calls = _calls(oai, seed, tool_choice={"type": "function", "function": {"name": "clock"}})
        if finish == "tool_calls":
            called += 1
            assert [name for name, _ in calls] == ["clock"]
            jsonschema.validate(json.loads(calls[0][1]), CLOCK)
    assert called >= 6


def test_none_and_auto_on_a_random_model_return_content(oai: openai.OpenAI) -> None:
    for choice in ("none", "auto"):
        finish, calls = _calls(oai, 3, tool_choice=choice, max_tokens=12)
        assert calls == [] and finish in ("stop", "length")


def test_streamed_calls_accumulate_to_the_non_streamed_ones(oai: openai.OpenAI) -> None:
    streamed_calls = 0
    for tool_choice, seed in [("required", 0), ("required", 1), ("required", 7), ("auto", 0), ("auto", 2)]:
        fields: dict[str, Any] = {"tool_choice": tool_choice, "seed": seed, "parallel_tool_calls": False}
        reply = oai.chat.completions.create(
            model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=160, **fields
        )
        with oai.beta.chat.completions.stream(
            model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=160, **fields
        ) as stream:
            for _ in stream:
                pass
            streamed = stream.get_final_completion()
        plain, accumulated = reply.choices[0], streamed.choices[0]
        assert accumulated.finish_reason == plain.finish_reason
        assert (accumulated.message.content or None) == (plain.message.content or None)  # role chunk: ""
        calls = accumulated.message.tool_calls or []
        assert [(call.function.name, call.function.arguments) for call in calls] == [
            (call.function.name, call.function.arguments) for call in plain.message.tool_calls or []
        ]
        assert all(call.id.startswith("call_") for call in calls)
        streamed_calls += len(calls)
    assert streamed_calls >= 2


def test_tool_result_is_rendered_into_the_next_prompt(oai: openai.OpenAI, hermes_dir: Path) -> None:
    reply = oai.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=160, seed=1, tool_choice="required"
    )
    call = (reply.choices[0].message.tool_calls or [])[0]
    follow_up: list[Any] = [
        *MESSAGES,
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    answer = oai.chat.completions.create(model="tiny", messages=follow_up, tools=TOOLS, max_tokens=8, seed=1)
    body = ChatCompletionRequest(model="tiny", messages=follow_up, tools=TOOLS)
    rendered = Tokenizer(hermes_dir).apply_chat_template(body.template_messages(), tools=TOOLS)
    assert "<tool_response>\nsunny, 21 C\n</tool_response>" in rendered
    assert (
        f'"name": "{call.function.name}", "arguments": {json.dumps(json.loads(call.function.arguments))}'
        in rendered
    )
    tokens = Tokenizer(hermes_dir).encode(rendered, add_special_tokens=False)
    assert answer.usage is not None and answer.usage.prompt_tokens == len(tokens)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]},
            "tools.0.function.parameters",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
            "tool_choice",
        ),
    ],
)
def test_bad_tools_are_400s_naming_the_field(oai: openai.OpenAI, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, extra_body=fields)
    assert error.value.body["param"] == param  # type: ignore[index]
