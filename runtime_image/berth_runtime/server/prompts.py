"""Prompt text to token ids, off the event loop and within a bound known before tokenizing.

Tokenizing a 12 MiB prompt took 6-7 s; run on the event loop it stalled health probes and every
stream for as long. Tokenizing (and rendering a chat template) therefore runs in a worker thread,
and a text longer than `prompt_char_limit` -- max_model_len tokens of the vocabulary's longest
token, more than any prompt that fits the context can hold -- is refused before it is tokenized.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from berth_runtime.engine.errors import PromptTooLong
from berth_runtime.server.errors import ApiError, translate
from berth_runtime.tokenizer import ChatTemplateError

if TYPE_CHECKING:
    from berth_runtime.engine.async_engine import AsyncEngine


def prompt_char_limit(engine: AsyncEngine) -> int:
    return engine.max_model_len * engine.tokenizer.longest_token_chars


def check_prompt_chars(engine: AsyncEngine, characters: int, param: str) -> None:
    limit = prompt_char_limit(engine)
    if characters > limit:
        raise ApiError(
            400,
            f"'{param}' has {characters} characters; this model's context of {engine.max_model_len} "
            f"tokens (max_model_len) cannot hold more than {limit} (max_model_len times "
            f"{engine.tokenizer.longest_token_chars}, the longest token's characters); shorten it",
            param=param,
            code="context_length_exceeded",
        )


async def encode_text(
    engine: AsyncEngine, text: str, param: str, add_special_tokens: bool = True
) -> list[int]:
    """Token ids of `text` (a prompt) tokenized in a worker thread; 400 if it cannot fit the context."""
    check_prompt_chars(engine, len(text), param)
    return await asyncio.to_thread(engine.tokenizer.encode, text, add_special_tokens)


async def encode_chat(
    engine: AsyncEngine,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = True,
    **template_vars: Any,
) -> list[int]:
    """The chat template rendered with `messages` (and `template_vars`, e.g. `tools`) and tokenized,
    both in a worker thread."""
    check_prompt_chars(engine, sum(len(str(message.get("content", ""))) for message in messages), "messages")
    try:
        text = await asyncio.to_thread(
            engine.tokenizer.apply_chat_template, messages, add_generation_prompt, **template_vars
        )
    except ChatTemplateError as error:
        raise ApiError(400, str(error), param="messages", code="chat_template_error") from None
    return await encode_text(engine, text, "messages", add_special_tokens=False)


async def completion_prompts(prompt: Any, engine: AsyncEngine) -> tuple[list[str], list[list[int]]]:
    """(text, token ids) of each prompt; OpenAI allows a string, strings, token ids or lists of them."""
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif prompt and all(isinstance(item, int) for item in prompt):
        items = [prompt]
    else:
        items = list(prompt)
    if not items:
        raise ApiError(400, "'prompt' is empty", param="prompt")
    tokenizer = engine.tokenizer
    texts: list[str] = []
    ids: list[list[int]] = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
            ids.append(await encode_text(engine, item, "prompt"))
            continue
        if len(item) >= engine.max_model_len:  # before reading or decoding the ids
            raise translate(PromptTooLong(len(item), 1, engine.max_model_len))
        vocab_size = tokenizer.vocab_size
        if not item or any(token < 0 or token >= vocab_size for token in item):
            raise ApiError(
                400, f"'prompt' token ids must be non-empty and within 0..{vocab_size - 1}", param="prompt"
            )
        texts.append(await asyncio.to_thread(tokenizer.decode, item))
        ids.append(list(item))
    if any(not prompt_ids for prompt_ids in ids):
        raise ApiError(400, "'prompt' encodes to no tokens", param="prompt")
    return texts, ids
