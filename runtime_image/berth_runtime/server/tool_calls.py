"""Function calling on /v1/chat/completions: `tools`, `tool_choice`, `parallel_tool_calls`.

The tools go to the chat template (`tools=`, as Hugging Face templates expect), which teaches the
model its family's call format (`server.tool_parsers`). `auto` lets the model choose and parses what
it wrote: calls become `message.tool_calls` (finish_reason `tool_calls`), anything else stays
content. `required` and a named function cannot rely on the model's choice, so the output is forced
through a grammar of the family's format whose JSON is a call of one of the allowed functions with
arguments valid against its `parameters` schema; `none` never returns calls. A malformed tool or a
tool_choice naming an unknown function is a 400 naming the field and the value.

Streaming sends content as soon as it cannot be the start of a call; a call is sent once complete
(its text must parse as a whole), in OpenAI's shape: a delta with the call's index, id, type and
name, then its arguments.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import llguidance

from berth_runtime.engine.async_engine import AsyncEngine
from berth_runtime.engine.grammar import Grammar, GrammarError, compile_grammar, grammar_vocabulary
from berth_runtime.server.errors import ApiError
from berth_runtime.server.tool_parsers import ParsedOutput, ToolCall, ToolFormat, detect_format
from berth_runtime.tokenizer import Tokenizer

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
_CHOICES = "'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}"


@dataclass(frozen=True)
class ToolRequest:
    tools: list[dict[str, Any]]
    """The function tools, as the chat template receives them."""
    choice: str
    """'auto', 'none', 'required' or 'function' (forced to `forced_name`)."""
    forced_name: str | None
    parallel: bool
    format: ToolFormat

    @property
    def parses(self) -> bool:
        return self.choice != "none"

    def parse(self, text: str) -> ParsedOutput:
        if not self.parses:
            return ParsedOutput(text, ())
        parsed = self.format.parse(text)
        if parsed.calls and not self.parallel:
            return ParsedOutput(parsed.content, parsed.calls[:1])
        return parsed

    def grammar_text(self) -> str | None:
        """llguidance grammar of the forced call(s) in the family's format, None unless forced."""
        if self.choice not in ("required", "function"):
            return None
        functions = [tool["function"] for tool in self.tools]
        if self.forced_name is not None:
            functions = [function for function in functions if function["name"] == self.forced_name]
        arguments_key = "parameters" if self.format.name == "llama3" else "arguments"
        options = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": function["name"]},
                    arguments_key: function.get("parameters") or {"type": "object"},
                },
                "required": ["name", arguments_key],
                "additionalProperties": False,
            }
            for function in functions
        ]
        schema = (
            {"anyOf": options, "x-guidance": _COMPACT}
            if len(options) > 1
            else {**options[0], "x-guidance": _COMPACT}
        )
        many = self.parallel and self.forced_name is None
        if self.format.name == "llama3":
            calls = 'call (";" call)*' if many else "call"
            return f"start: {calls}\ncall: %json {json.dumps(schema)}"
        calls = 'call ("\\n" call)*' if many else "call"
        return (
            f'start: {calls}\ncall: "<tool_call>\\n" body "\\n</tool_call>"\nbody: %json {json.dumps(schema)}'
        )


def tool_request(body: Any, tokenizer: Tokenizer) -> ToolRequest | None:
    """The request's validated tools and choice, in the format of the tokenizer's chat template; None
    when it has no tools."""
    tools = body.tools
    choice = body.tool_choice
    if not tools:
        if choice not in (None, "none", "auto"):
            raise ApiError(400, f"'tool_choice' {choice!r} needs 'tools'", param="tool_choice")
        return None
    if not isinstance(tools, list):
        raise ApiError(400, f"'tools' must be a list of function tools; got {tools!r}", param="tools")
    checked = [_check_tool(tool, index) for index, tool in enumerate(tools)]
    names = [tool["function"]["name"] for tool in checked]
    forced_name = None
    if choice is None:
        choice = "auto"
    elif isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            raise ApiError(400, f"'tool_choice' must be {_CHOICES}; got {choice!r}", param="tool_choice")
        if name not in names:
            raise ApiError(
                400,
                f"'tool_choice.function.name' {name!r} is not one of the tools: {', '.join(names)}",
                param="tool_choice.function.name",
            )
        choice, forced_name = "function", name
    elif choice not in ("none", "auto", "required"):
        raise ApiError(400, f"'tool_choice' must be {_CHOICES}; got {choice!r}", param="tool_choice")
    parallel = body.parallel_tool_calls
    if parallel is not None and not isinstance(parallel, bool):
        raise ApiError(
            400, f"'parallel_tool_calls' must be a boolean; got {parallel!r}", param="parallel_tool_calls"
        )
    return ToolRequest(
        checked, choice, forced_name, parallel is not False, detect_format(tokenizer.chat_template)
    )


def _check_tool(tool: object, index: int) -> dict[str, Any]:
    field = f"tools.{index}"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise ApiError(
            400,
            f"'{field}' must be {{'type': 'function', 'function': {{...}}}}; got {tool!r}",
            param=f"{field}.type",
        )
    function = tool.get("function")
    if not isinstance(function, dict):
        raise ApiError(
            400, f"'{field}.function' must be an object; got {function!r}", param=f"{field}.function"
        )
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ApiError(
            400,
            f"'{field}.function.name' must be 1-64 letters, digits, '_' or '-'; got {name!r}",
            param=f"{field}.function.name",
        )
    parameters = function.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise ApiError(
                400,
                f"'{field}.function.parameters' must be a JSON schema object; got {parameters!r}",
                param=f"{field}.function.parameters",
            )
        try:
            llguidance.LLMatcher.grammar_from_json_schema(parameters)  # type: ignore[arg-type]
        except ValueError as error:
            raise ApiError(
                400, f"invalid '{field}.function.parameters': {error}", param=f"{field}.function.parameters"
            ) from None
    return {"type": "function", "function": function}


async def tool_grammar(tools: ToolRequest | None, engine: AsyncEngine) -> Grammar | None:
    """The compiled grammar forcing the call(s) of `required` or a named function; None otherwise."""
    text = tools.grammar_text() if tools is not None else None
    if text is None:
        return None
    model = engine.engine
    try:
        return await asyncio.to_thread(
            lambda: compile_grammar(
                text,
                grammar_vocabulary(engine.tokenizer, model.vocab_size, model.sampler.eos_token_ids),
                "tools",
            )
        )
    except GrammarError as error:
        raise ApiError(400, str(error), param=error.field_name) from None


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": new_call_id(),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def finish_reason(parsed: ParsedOutput, reason: str | None) -> str | None:
    return "tool_calls" if parsed.calls and reason == "stop" else reason


class ToolStream:
    """One streamed choice: sends sure content as it grows, the calls when the output is complete."""

    def __init__(self, tools: ToolRequest) -> None:
        self.tools = tools
        self.sent = 0
        """Characters of the output already sent as content."""

    def deltas(
        self, text: str, finished: bool, reason: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The deltas to send for the output so far, and the finish reason once finished."""
        if not finished:
            sure = self.tools.format.content_prefix(text)
            if sure <= self.sent:
                return [], None
            content, self.sent = text[self.sent : sure], sure
            return [{"content": content}], None
        parsed = self.tools.parse(text)
        deltas: list[dict[str, Any]] = []
        rest = (parsed.content or "")[self.sent :] if parsed.calls else text[self.sent :]
        if rest:
            deltas.append({"content": rest})
        for index, call in enumerate(tool_calls_json(parsed.calls)):
            function = call["function"]
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }
            deltas.append({"tool_calls": [head]})
            deltas.append(
                {"tool_calls": [{"index": index, "function": {"arguments": function["arguments"]}}]}
            )
        return deltas, finish_reason(parsed, reason)
