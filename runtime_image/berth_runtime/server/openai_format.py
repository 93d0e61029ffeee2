"""Response objects of the OpenAI API: completion and chat choices, chunks, logprobs and usage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from berth_runtime.engine.outputs import RequestOutput, TokenLogprob
from berth_runtime.tokenizer import Tokenizer


@dataclass
class ChoiceState:
    """What one choice accumulated so far."""

    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, output: RequestOutput) -> None:
        self.text += output.new_text
        self.completion_tokens = output.completion_tokens
        self.prompt_tokens = output.prompt_tokens
        if output.logprobs:
            self.logprobs.extend(output.logprobs)
        if output.finished:
            self.finish_reason = output.finish_reason


def envelope(object_type: str, response_id: str, model: str, created: int | None = None) -> dict[str, Any]:
    return {"id": response_id, "object": object_type, "created": created or int(time.time()), "model": model}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_logprobs(
    tokenizer: Tokenizer, entries: list[TokenLogprob], text_offset_start: int = 0
) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, logprobs, top alternatives and offsets.

    Tokens are named by `Tokenizer.token_label`, so byte tokens that are each part of a character
    stay distinct ("bytes:\\xe3", "bytes:\\xe4") instead of collapsing into one U+FFFD key. Two
    alternatives that still share a label keep the higher logprob."""
    tokens: list[str] = []
    offsets: list[int] = []
    offset = text_offset_start
    for entry in entries:
        token = tokenizer.token_label(entry.token_id)
        tokens.append(token)
        offsets.append(offset)
        if not token.startswith("bytes:"):
            offset += len(token)
    top_logprobs: list[dict[str, float]] = []
    for entry in entries:
        alternatives: dict[str, float] = {}
        for token_id, logprob in sorted(entry.top.items(), key=lambda item: -item[1]):
            alternatives.setdefault(tokenizer.token_label(token_id), logprob)
        top_logprobs.append(alternatives)
    return {
        "tokens": tokens,
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def chat_logprobs(tokenizer: Tokenizer, entries: list[TokenLogprob]) -> dict[str, Any]:
    """The chat shape: one object per token with its own bytes (not those of its decoded text, which
    for part of a character would be U+FFFD's) and its top alternatives."""

    def describe(token_id: int, logprob: float) -> dict[str, Any]:
        return {
            "token": tokenizer.token_label(token_id),
            "logprob": logprob,
            "bytes": list(tokenizer.token_bytes(token_id)),
        }

    return {
        "content": [
            {
                **describe(entry.token_id, entry.logprob),
                "top_logprobs": [describe(token_id, logprob) for token_id, logprob in entry.top.items()],
            }
            for entry in entries
        ]
    }
