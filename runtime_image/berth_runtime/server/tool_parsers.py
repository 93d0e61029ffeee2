"""Tool calls out of generated text, in each model family's native format.

A model is taught to call tools by its chat template, and each family writes calls its own way:
Hermes / Qwen wrap a JSON object `{"name": ..., "arguments": {...}}` in `<tool_call>...</tool_call>`
(several calls are several blocks); Llama 3.x writes bare JSON `{"name": ..., "parameters": {...}}`,
optionally after `<|python_tag|>`, several separated by `;`. The family is read off the chat
template (the template that teaches the format names its markers), so no flag is needed.

Text that does not parse as the family's calls -- prose, a cut-off call, JSON of the wrong shape --
is returned as content with no calls: a malformed call never fails a request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

HERMES_START = "<tool_call>"
_HERMES_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str
    """The arguments object as JSON text (OpenAI's `function.arguments`)."""


@dataclass(frozen=True)
class ParsedOutput:
    content: str | None
    calls: tuple[ToolCall, ...]


def _call(value: object, arguments_key: str) -> ToolCall | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get(arguments_key, value.get("arguments", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(value["name"], json.dumps(arguments, ensure_ascii=False))


def _as_content(text: str) -> ParsedOutput:
    return ParsedOutput(text, ())


def parse_hermes(text: str) -> ParsedOutput:
    """`<tool_call>{"name": ..., "arguments": ...}</tool_call>` blocks; the text before them is content."""
    start = text.find(HERMES_START)
    if start < 0:
        return _as_content(text)
    calls = []
    rest = text[start:]
    for match in _HERMES_BLOCK.finditer(rest):
        try:
            call = _call(json.loads(match.group(1)), "arguments")
        except json.JSONDecodeError:
            call = None
        if call is None:
            return _as_content(text)
        calls.append(call)
    if not calls or _HERMES_BLOCK.sub("", rest).strip():
        return _as_content(text)  # a cut-off block, or prose between or after the calls
    return ParsedOutput(text[:start].rstrip() or None, tuple(calls))


def parse_llama3(text: str) -> ParsedOutput:
    """The whole output as JSON calls `{"name": ..., "parameters": ...}` (after an optional
    `<|python_tag|>`), separated by `;`; anything else is content."""
    body = text.strip().removeprefix(_PYTHON_TAG).strip()
    if not body.startswith("{"):
        return _as_content(text)
    decoder = json.JSONDecoder()
    calls = []
    position = 0
    while position < len(body):
        try:
            value, position = decoder.raw_decode(body, position)
        except json.JSONDecodeError:
            return _as_content(text)
        call = _call(value, "parameters")
        if call is None:
            return _as_content(text)
        calls.append(call)
        while position < len(body) and body[position] in "; \n\t\r":
            position += 1
    return ParsedOutput(None, tuple(calls))


def content_prefix_hermes(text: str) -> int:
    """How much of a growing output is content whatever follows: up to a `<tool_call>` or a tail that
    could begin one."""
    start = text.find(HERMES_START)
    if start >= 0:
        return start
    for length in range(min(len(HERMES_START) - 1, len(text)), 0, -1):
        if HERMES_START.startswith(text[-length:]):
            return len(text) - length
    return len(text)


def content_prefix_llama3(text: str) -> int:
    """A Llama 3 call is the whole output, so nothing is sure content until it starts otherwise."""
    body = text.lstrip()
    if not body or body.startswith("{") or _PYTHON_TAG.startswith(body[: len(_PYTHON_TAG)]):
        return 0
    return len(text)


@dataclass(frozen=True)
class ToolFormat:
    name: str
    parse: Callable[[str], ParsedOutput]
    content_prefix: Callable[[str], int]


FORMATS = {
    "hermes": ToolFormat("hermes", parse_hermes, content_prefix_hermes),
    "llama3": ToolFormat("llama3", parse_llama3, content_prefix_llama3),
}


def detect_format(chat_template: str | None) -> ToolFormat:
    """The family's format from its chat template: `<tool_call>` is Hermes / Qwen, Llama 3's header
    tokens or `<|python_tag|>` are Llama 3; anything else gets Hermes (forced calls still work)."""
    template = chat_template or ""
    if HERMES_START in template:
        return FORMATS["hermes"]
    if _PYTHON_TAG in template or "<|start_header_id|>" in template:
        return FORMATS["llama3"]
    return FORMATS["hermes"]
