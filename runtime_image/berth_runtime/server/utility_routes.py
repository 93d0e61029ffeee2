"""The small endpoints users script against: `/tokenize`, `/detokenize` (vLLM's shapes) and `/version`.

Counting a prompt's tokens before sending it, or reading what ids mean, needs the server's own
tokenizer and chat template; these routes expose exactly the ones generation uses, with the same
bounds (a text that cannot fit the context is refused before it is tokenized, off the event loop).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import ApiError, model_not_found
from berth_runtime.server.kserve_v2 import SERVER_NAME, SERVER_VERSION
from berth_runtime.server.prompts import encode_chat, encode_text


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | None = None


class TokenizeRequest(BaseModel):
    """vLLM's two forms: a `prompt`, or chat `messages` rendered with the model's chat template."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    prompt: str | None = None
    messages: list[_Message] | None = Field(default=None, min_length=1)
    add_special_tokens: bool | None = None
    """Default: true for a prompt; false for messages (the template writes them)."""
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    tokens: list[int]


def build_router(context: ServingContext) -> APIRouter:
    router = APIRouter()

    def check_model(model: str | None) -> None:
        if model is not None and model != context.model_name:
            raise model_not_found(model, context.model_name)

    @router.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        check_model(body.model)
        engine = context.state.require_engine()
        if (body.prompt is None) == (body.messages is None):
            raise ApiError(400, "give exactly one of 'prompt' and 'messages'", param="prompt")
        if body.messages is not None:
            messages = [message.model_dump(exclude_none=True) for message in body.messages]
            if body.add_special_tokens:
                raise ApiError(
                    400,
                    "'add_special_tokens'=true with 'messages' is not supported: the chat template "
                    "writes the special tokens; accepted: false or unset",
                    param="add_special_tokens",
                )
            tokens = await encode_chat(engine, messages, body.add_generation_prompt)
        else:
            add_special_tokens = True if body.add_special_tokens is None else body.add_special_tokens
            tokens = await encode_text(engine, str(body.prompt), "prompt", add_special_tokens)
        reply: dict[str, Any] = {
            "count": len(tokens),
            "max_model_len": engine.max_model_len,
            "tokens": tokens,
        }
        reply["token_strs"] = (
            [engine.tokenizer.token_to_text(token) for token in tokens] if body.return_token_strs else None
        )
        return reply

    @router.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict[str, str]:
        check_model(body.model)
        engine = context.state.require_engine()
        vocab_size = engine.tokenizer.vocab_size
        if any(not 0 <= token < vocab_size for token in body.tokens):
            raise ApiError(400, f"'tokens' must be ids within 0..{vocab_size - 1}", param="tokens")
        if len(body.tokens) > engine.max_model_len:
            raise ApiError(
                400,
                f"'tokens' has {len(body.tokens)} ids; accepted: at most {engine.max_model_len} "
                "(max_model_len)",
                param="tokens",
            )
        return {"prompt": await asyncio.to_thread(engine.tokenizer.decode, body.tokens)}

    @router.get("/version")
    async def version() -> dict[str, str]:
        return {"version": SERVER_VERSION, "name": SERVER_NAME}

    return router
