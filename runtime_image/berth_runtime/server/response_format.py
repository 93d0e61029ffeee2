"""Turns a request's structured-output fields into the `Grammar` its SamplingParams carry.

OpenAI's `response_format` ({"type": "text"}, {"type": "json_object"}, {"type": "json_schema",
"json_schema": {"name", "schema", "strict", "description"}}) on both completions endpoints, and
vLLM's extra parameters `guided_json` (a schema), `guided_choice` (a list of strings) and
`guided_regex`. At most one of them may constrain a request. JSON is generated compact (no
whitespace between tokens: a model cannot stall in endless indentation) and `strict` is accepted
with either value: the schema is always enforced. Anything malformed, or a schema or regex the
grammar compiler refuses, is a 400 naming the field and the reason.

The model's vocabulary is prepared for the grammar library at the first structured request (a pass
over every token), off the event loop, and kept for the process.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import llguidance

from berth_runtime.engine.async_engine import AsyncEngine
from berth_runtime.engine.grammar import Grammar, GrammarError, compile_grammar, grammar_vocabulary
from berth_runtime.server.errors import ApiError

_COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TYPES = "'text', 'json_object' or 'json_schema'"


def grammar_source(body: Any) -> tuple[str, str] | None:
    """(field, llguidance grammar text) of the request's constraint, None when it has none; raises
    ApiError for a malformed field or more than one constraint."""
    found: list[tuple[str, str]] = []
    response_format = getattr(body, "response_format", None)
    if response_format is not None:
        parsed = _response_format(response_format)
        if parsed is not None:
            found.append(parsed)
    extra = body.model_extra or {}
    if extra.get("guided_json") is not None:
        schema = extra["guided_json"]
        if isinstance(schema, str):
            schema = _parse_json(schema, "guided_json")
        found.append(("guided_json", _json_grammar(schema, "guided_json")))
    if extra.get("guided_choice") is not None:
        found.append(("guided_choice", _choice_grammar(extra["guided_choice"])))
    if extra.get("guided_regex") is not None:
        regex = extra["guided_regex"]
        if not isinstance(regex, str) or not regex:
            raise ApiError(
                400, f"'guided_regex' must be a non-empty string, got {regex!r}", param="guided_regex"
            )
        found.append(("guided_regex", llguidance.LLMatcher.grammar_from_regex(regex)))
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise ApiError(400, f"at most one structured-output field may be set; got {names}", param=found[1][0])
    return found[0] if found else None


async def request_grammar(body: Any, engine: AsyncEngine) -> Grammar | None:
    """The compiled Grammar of the request's constraint (None without one); ApiError when refused."""
    source = grammar_source(body)
    if source is None:
        return None
    field_name, text = source
    model = engine.engine
    try:
        return await asyncio.to_thread(
            lambda: compile_grammar(
                text,
                grammar_vocabulary(engine.tokenizer, model.vocab_size, model.sampler.eos_token_ids),
                field_name,
            )
        )
    except GrammarError as error:
        raise ApiError(400, str(error), param=error.field_name) from None


def _response_format(value: object) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        raise ApiError(
            400, f"'response_format' must be an object with a 'type'; got {value!r}", param="response_format"
        )
    kind = value.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return "response_format", _json_grammar({"type": "object"}, "response_format")
    if kind != "json_schema":
        raise ApiError(
            400,
            f"response_format type {kind!r} is not supported; accepted: {_TYPES}",
            param="response_format.type",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise ApiError(
            400,
            f"'response_format.json_schema' must be an object with 'name' and 'schema'; got {spec!r}",
            param="response_format.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise ApiError(
            400,
            f"'response_format.json_schema.name' must be 1-64 letters, digits, '_' or '-'; got {name!r}",
            param="response_format.json_schema.name",
        )
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ApiError(
            400,
            f"'response_format.json_schema.strict' must be true, false or null; got {strict!r}",
            param="response_format.json_schema.strict",
        )
    field_name = "response_format.json_schema.schema"
    schema = spec.get("schema", {"type": "object"})  # OpenAI: an absent schema means any object
    return field_name, _json_grammar(schema, field_name)


def _json_grammar(schema: object, field_name: str) -> str:
    if not isinstance(schema, dict):
        raise ApiError(400, f"'{field_name}' must be a JSON schema object; got {schema!r}", param=field_name)
    try:
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=_COMPACT_JSON)  # type: ignore[arg-type]
    except ValueError as error:
        raise ApiError(400, f"invalid '{field_name}': {error}", param=field_name) from None


def _choice_grammar(choices: object) -> str:
    if not (
        isinstance(choices, list)
        and choices
        and all(isinstance(choice, str) and choice for choice in choices)
    ):
        raise ApiError(
            400,
            f"'guided_choice' must be a non-empty list of non-empty strings; got {choices!r}",
            param="guided_choice",
        )
    return llguidance.LLMatcher.grammar_from_regex("|".join(f"({re.escape(choice)})" for choice in choices))


def _parse_json(text: str, field_name: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"'{field_name}' is not valid JSON: {error}", param=field_name) from None
