"""Tool-call parsers on both native formats (Hermes / Qwen `<tool_call>` blocks, Llama 3 JSON),
one call and several, and malformed text returned as content without raising; the format read off
the chat template; the content a stream may send before a call could start; the grammar forcing a
call accepts the family's format and nothing the parser cannot read back."""

from __future__ import annotations

import json
from pathlib import Path

import llguidance
import pytest

from berth_runtime.engine.grammar import GrammarVocabulary, compile_grammar
from berth_runtime.server.tool_calls import ToolRequest
from berth_runtime.server.tool_parsers import (
    FORMATS,
    ToolCall,
    content_prefix_hermes,
    content_prefix_llama3,
    detect_format,
    parse_hermes,
    parse_llama3,
)
from berth_runtime.tokenizer import Tokenizer


def test_hermes_one_call_with_content_before() -> None:
    parsed = parse_hermes(
        'Let me look.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    )
    assert parsed.content == "Let me look."
    assert parsed.calls == (ToolCall("weather", '{"city": "Oslo"}'),)


def test_hermes_several_calls_and_string_arguments() -> None:
    text = (
        '<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": "{\\"y\\": [1, 2]}"}</tool_call>'
    )
    parsed = parse_hermes(text)
    assert parsed.content is None
    assert [call.name for call in parsed.calls] == ["a", "b"]
    assert json.loads(parsed.calls[1].arguments) == {"y": [1, 2]}


@pytest.mark.parametrize(
    "text",
    [
        "just prose",
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"name": "a", "arguments": {"x": 1}}',  # cut off
        '<tool_call>{"arguments": {}}</tool_call>',  # no name
        '<tool_call>{"name": "a", "arguments": [1]}</tool_call>',
        '<tool_call>{"name": "a", "arguments": {}}</tool_call> and then prose',
        "<tool_call></tool_call>",
        "",
    ],
)
def test_hermes_malformed_is_content(text: str) -> None:
    parsed = parse_hermes(text)
    assert parsed.calls == ()
    assert parsed.content == text


def test_llama3_calls_with_and_without_python_tag() -> None:
    assert parse_llama3('{"name": "f", "parameters": {"a": "b"}}').calls == (ToolCall("f", '{"a": "b"}'),)
    parsed = parse_llama3(
        '<|python_tag|>{"name": "f", "parameters": {}}; {"name": "g", "parameters": {"n": 2}}'
    )
    assert parsed.content is None
    assert [(call.name, json.loads(call.arguments)) for call in parsed.calls] == [("f", {}), ("g", {"n": 2})]


@pytest.mark.parametrize(
    "text",
    ["Hello there", '{"name": "f"', '{"foo": 1}', '{"name": "f", "parameters": {}} trailing words', "[1, 2]"],
)
def test_llama3_malformed_is_content(text: str) -> None:
    parsed = parse_llama3(text)
    assert parsed.calls == ()
    assert parsed.content == text


def test_format_detected_from_the_chat_template() -> None:
    assert detect_format("{% if tools %}<tool_call>{% endif %}").name == "hermes"
    assert detect_format("<|start_header_id|>ipython<|end_header_id|>").name == "llama3"
    assert detect_format(None).name == "hermes"


def test_content_prefix_holds_back_a_possible_call_start() -> None:
    assert content_prefix_hermes("Sure thing") == len("Sure thing")
    assert content_prefix_hermes("Sure <tool_") == len("Sure ")
    assert content_prefix_hermes("Sure <tool_call>{") == len("Sure ")
    assert content_prefix_llama3("  {") == 0
    assert content_prefix_llama3("Hi") == 2


def test_none_never_returns_calls_and_parallel_false_keeps_one() -> None:
    call = '<tool_call>{{"name": "{}", "arguments": {{}}}}</tool_call>'
    text = call.format("a") + call.format("b")
    none = ToolRequest([], "none", None, True, FORMATS["hermes"])
    assert none.parse(text).calls == () and none.grammar_text() is None
    single = ToolRequest([], "auto", None, False, FORMATS["hermes"])
    assert [call.name for call in single.parse(text).calls] == ["a"]


@pytest.mark.parametrize(
    ("format_name", "parallel", "text"),
    [
        ("hermes", False, '<tool_call>\n{"name":"f","arguments":{"n":3}}\n</tool_call>'),
        (
            "hermes",
            True,
            '<tool_call>\n{"name":"f","arguments":{"n":3}}\n</tool_call>\n<tool_call>\n{"name":"g","arguments":{}}\n</tool_call>',
        ),
        ("llama3", True, '{"name":"f","parameters":{"n":3}};{"name":"g","parameters":{}}'),
    ],
)
def test_forced_grammar_accepts_the_format_and_the_parser_reads_it_back(
    tiny_llama_dir: Path, format_name: str, parallel: bool, text: str
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
            },
        },
        {"type": "function", "function": {"name": "g"}},
    ]
    request = ToolRequest(tools, "required", None, parallel, FORMATS[format_name])
    tokenizer = Tokenizer(tiny_llama_dir)
    vocabulary = GrammarVocabulary(tokenizer, tokenizer.vocab_size, tokenizer.eos_token_ids)
    grammar = compile_grammar(request.grammar_text() or "", vocabulary, "tools")
    matcher = llguidance.LLMatcher(vocabulary.ll_tokenizer, grammar.text, log_level=0)
    assert matcher.consume_tokens(tokenizer.encode(text, add_special_tokens=False)), matcher.get_error()
    assert matcher.is_accepting()
    assert [call.name for call in request.parse(text).calls] == (["f", "g"] if parallel else ["f"])
