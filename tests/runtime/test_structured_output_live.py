"""Structured output on the live server through the `openai` SDK: `response_format` json_schema and
json_object on chat and completions over many seeds (every output that stops parses and validates),
the SDK's own `chat.completions.parse` turning a reply into a pydantic object, streamed text equal to
the non-streamed text for the same seed, vLLM's guided_choice / guided_regex, and a 400 naming the
field and the reason for a bad schema, a bad regex or a malformed response_format. The server
fixture is in live_api_fixtures.py."""

from __future__ import annotations

import json
import re
from typing import Literal

import jsonschema
import openai
import pydantic
import pytest
from live_api import PROMPT

pytest_plugins = ["live_api_fixtures"]

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 8},
        "population": {"type": "integer", "minimum": 0, "maximum": 99999},
        "coastal": {"type": "boolean"},
    },
    "required": ["city", "population", "coastal"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "city", "schema": SCHEMA, "strict": True},
}
MESSAGES = [{"role": "user", "content": "Describe a city as JSON."}]


class Weather(pydantic.BaseModel):
    sky: Literal["clear", "cloudy", "rain"]
    windy: bool


def test_chat_json_schema_outputs_validate_over_many_seeds(oai: openai.OpenAI) -> None:
    stopped = 0
    for seed in range(16):
        reply = oai.chat.completions.create(
            model="tiny",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=96,  # the tiny BPE spells most characters byte by byte
            temperature=1.0,
            seed=seed,
            response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
        )
        choice = reply.choices[0]
        if choice.finish_reason == "stop":
            stopped += 1
            jsonschema.validate(json.loads(choice.message.content or ""), SCHEMA)
    assert stopped >= 14


def test_json_object_on_chat_and_completions(oai: openai.OpenAI) -> None:
    texts = []
    for seed in range(12):
        chat = oai.chat.completions.create(
            model="tiny",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=40,
            seed=seed,
            response_format={"type": "json_object"},
        )
        texts.append((chat.choices[0].message.content or "", chat.choices[0].finish_reason))
        completion = oai.completions.create(
            model="tiny",
            prompt=PROMPT,
            max_tokens=40,
            seed=seed,
            extra_body={"response_format": {"type": "json_object"}},
        )
        texts.append((completion.choices[0].text, completion.choices[0].finish_reason))
    for text, reason in texts:
        assert text.startswith("{") and reason in ("stop", "length"), (text, reason)
        if reason == "stop":
            assert isinstance(json.loads(text), dict), text
    assert sum(reason == "stop" for _, reason in texts) >= 3, texts


def test_the_sdk_parses_a_reply_into_a_pydantic_model(oai: openai.OpenAI) -> None:
    for seed in range(4):
        reply = oai.chat.completions.parse(
            model="tiny",
            messages=MESSAGES,
            max_tokens=32,
            seed=seed,
            response_format=Weather,  # type: ignore[arg-type]
        )
        parsed = reply.choices[0].message.parsed
        assert isinstance(parsed, Weather), reply


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_streamed_text_equals_the_non_streamed_text(oai: openai.OpenAI, endpoint: str) -> None:
    for seed in (1, 2, 3):
        if endpoint == "chat":
            fields = {"messages": MESSAGES, "response_format": JSON_SCHEMA_FORMAT}
            whole = oai.chat.completions.create(model="tiny", max_tokens=48, seed=seed, **fields)  # type: ignore[call-overload]
            chunks = oai.chat.completions.create(
                model="tiny", max_tokens=48, seed=seed, stream=True, **fields
            )  # type: ignore[call-overload]
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
            expected = whole.choices[0].message.content
        else:
            extra = {"extra_body": {"response_format": JSON_SCHEMA_FORMAT}}
            whole = oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=48, seed=seed, **extra)  # type: ignore[call-overload]
            chunks = oai.completions.create(
                model="tiny", prompt=PROMPT, max_tokens=48, seed=seed, stream=True, **extra
            )  # type: ignore[call-overload]
            streamed = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
            expected = whole.choices[0].text
        assert streamed == expected and expected.startswith("{"), (streamed, expected)


def test_guided_choice_and_regex(oai: openai.OpenAI) -> None:
    for seed in range(6):
        choice = oai.completions.create(
            model="tiny",
            prompt=PROMPT,
            max_tokens=8,
            seed=seed,
            extra_body={"guided_choice": ["red", "green"]},
        )
        assert choice.choices[0].text in ("red", "green")
        regex = oai.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=12,
            seed=seed,
            extra_body={"guided_regex": r"[0-9]{3}-[a-z]{2}"},  # type: ignore[arg-type]
        )
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", regex.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nope"}},
                }
            },
            "response_format.json_schema.schema",
            "nope",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "'yaml' is not supported"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "must be an object"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}},
            "response_format.json_schema.name",
            "'a b'",
        ),
        ({"extra_body": {"guided_regex": "(unclosed"}}, "guided_regex", "invalid 'guided_regex'"),
        ({"extra_body": {"guided_choice": []}}, "guided_choice", "non-empty list"),
        (
            {"response_format": {"type": "json_object"}, "extra_body": {"guided_choice": ["a"]}},
            "guided_choice",
            "at most one",
        ),
        (
            {"response_format": {"type": "json_object"}, "extra_body": {"min_tokens": 3}},
            "min_tokens",
            "grammar",
        ),
    ],
)
def test_bad_constraints_are_400_naming_the_field_and_reason(
    oai: openai.OpenAI, fields: dict[str, object], param: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, **fields)  # type: ignore[call-overload]
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == param and message in error["message"], error
