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


def _token_text(tokenizer: Tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def completion_logprobs(
    tokenizer: Tokenizer, entries: list[TokenLogprob], text_offset_start: int = 0
) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, logprobs, top alternatives and offsets."""
    tokens: list[str] = []
    offsets: list[int] = []
    offset = text_offset_start
    for entry in entries:
        token = _token_text(tokenizer, entry.token_id)
        tokens.append(token)
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [
            {_token_text(tokenizer, token_id): logprob for token_id, logprob in entry.top.items()}
            for entry in entries
        ],
        "text_offset": offsets,
    }


def chat_logprobs(tokenizer: Tokenizer, entries: list[TokenLogprob]) -> dict[str, Any]:
    """The chat shape: one object per token with its bytes and top alternatives."""

    def describe(token_id: int, logprob: float) -> dict[str, Any]:
        token = _token_text(tokenizer, token_id)
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {
        "content": [
            {
                **describe(entry.token_id, entry.logprob),
                "top_logprobs": [describe(token_id, logprob) for token_id, logprob in entry.top.items()],
            }
            for entry in entries
        ]
    }
