"""OpenAI-compatible API: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

Each choice (every prompt times `n`) is one engine request; they run concurrently and stream back
interleaved, tagged with their index. Chat requests with `tools` are parsed for calls by
`server.tool_calls`. Streams are server-sent events ending in `data: [DONE]`,
with a final usage chunk when `stream_options.include_usage` is set. An error after a stream began
arrives as an error event before `[DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from berth_runtime.engine.outputs import RequestOutput
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import ApiError, error_body, model_not_found, translate
from berth_runtime.server.generation import (
    MeteredStream,
    collect,
    fit_max_tokens,
    new_request_id,
    start_all,
    unless_disconnected,
)
from berth_runtime.server.openai_format import (
    ChoiceState,
    chat_logprobs,
    completion_logprobs,
    envelope,
    usage,
)
from berth_runtime.server.openai_protocol import ChatCompletionRequest, CompletionRequest, GenerationRequest
from berth_runtime.server.prompts import completion_prompts, encode_chat
from berth_runtime.server.response_format import request_grammar
from berth_runtime.server.streams import SSE_HEADERS, SSE_MEDIA_TYPE, merge_streams, sse_event
from berth_runtime.server.tool_calls import (
    ToolRequest,
    ToolStream,
    finish_reason,
    tool_calls_json,
    tool_grammar,
    tool_request,
)
from berth_runtime.tokenizer import Tokenizer

Jobs = list[tuple[list[int], SamplingParams]]


def build_router(context: ServingContext) -> APIRouter:
    router = APIRouter()
    started = int(time.time())

    def check_model(body: GenerationRequest) -> None:
        if body.model is not None and body.model != context.model_name:
            raise model_not_found(body.model, context.model_name)

    def tokenizer() -> Tokenizer:
        return context.state.require_engine().tokenizer

    async def jobs_for(
        body: GenerationRequest,
        prompts: list[list[int]],
        requested: int | None,
        default: int | None,
        logprobs: int | None,
        prompt_param: str,
        tools: ToolRequest | None = None,
    ) -> Jobs:
        engine = context.state.require_engine()
        grammar = await request_grammar(body, engine)
        forced = await tool_grammar(tools, engine)
        if forced is not None and grammar is not None:
            raise ApiError(
                400,
                f"'tool_choice' forces a tool call; it cannot be combined with '{grammar.source}'",
                param="tool_choice",
            )
        grammar = grammar or forced
        jobs: Jobs = []
        for prompt_ids in prompts:
            budget = fit_max_tokens(
                requested if requested is not None else default,
                len(prompt_ids),
                body.min_tokens,
                engine.max_model_len,
                prompt_param,
            )
            jobs += [
                (prompt_ids, body.sampling_params(budget, choice, logprobs, grammar))
                for choice in range(body.n)
            ]
        return jobs

    def model_card() -> dict[str, Any]:
        engine = context.state.engine
        card: dict[str, Any] = {
            "id": context.model_name,
            "object": "model",
            "created": started,
            "owned_by": "berth",
            "root": context.config.model,
        }
        if engine is not None:
            card["max_model_len"] = engine.max_model_len
        return card

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @router.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str) -> dict[str, Any]:
        if model_id != context.model_name:
            raise model_not_found(model_id, context.model_name)
        return model_card()

    @router.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        check_model(body)
        body.check_supported()
        prompt_texts, prompt_ids = await completion_prompts(body.prompt, context.state.require_engine())
        jobs = await jobs_for(
            body, prompt_ids, body.max_tokens, body.default_max_tokens(), body.logprobs, "prompt"
        )
        response_id = new_request_id("cmpl")
        echo = [prompt_texts[index // body.n] if body.echo else "" for index in range(len(jobs))]

        def choice(index: int, state: ChoiceState, delta: RequestOutput | None) -> list[dict[str, Any]]:
            if delta is None:
                text, entries, offset = echo[index] + state.text, state.logprobs, len(echo[index])
            else:
                # state already holds this delta: offsets continue after the text sent before it
                text, entries = delta.new_text, delta.logprobs or []
                offset = len(echo[index]) + len(state.text) - len(delta.new_text)
            logprobs = (
                completion_logprobs(tokenizer(), entries, offset) if body.logprobs is not None else None
            )
            finish = state.finish_reason if delta is None or delta.finished else None
            return [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]

        if body.stream:
            streams = await start_all(context, jobs, response_id)
            head = envelope("text_completion", response_id, context.model_name)

            def first_chunks() -> list[dict[str, Any]]:
                return [
                    {**head, "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": None}]}
                    for i, text in enumerate(echo)
                    if text
                ]

            return _stream(streams, head, choice, first_chunks, body.include_usage_in_stream(), body.n)

        async def run() -> dict[str, Any]:
            states = await _collect_all(await start_all(context, jobs, response_id))
            return {
                **envelope("text_completion", response_id, context.model_name),
                "choices": [choice(index, state, None)[0] for index, state in enumerate(states)],
                "usage": _usage(states, body.n),
            }

        return await unless_disconnected(request, run())

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> dict[str, Any] | StreamingResponse:
        check_model(body)
        body.check_supported()
        tools = tool_request(body, tokenizer())
        template_vars = {"tools": tools.tools} if tools is not None else {}
        prompt_ids = await encode_chat(
            context.state.require_engine(), body.template_messages(), **template_vars
        )
        logprobs = body.logprobs_count()
        jobs = await jobs_for(
            body, [prompt_ids], body.requested_max_tokens(), None, logprobs, "messages", tools
        )
        response_id = new_request_id("chatcmpl")
        tool_streams = [ToolStream(tools) for _ in jobs] if tools is not None and tools.parses else None

        def choice(index: int, state: ChoiceState, delta: RequestOutput | None) -> list[dict[str, Any]]:
            entries = state.logprobs if delta is None else (delta.logprobs or [])
            logprob_block = chat_logprobs(tokenizer(), entries) if logprobs is not None else None
            if delta is None:
                message: dict[str, Any] = {"role": "assistant", "content": state.text}
                finish = state.finish_reason
                if tools is not None and tools.parses:
                    parsed = tools.parse(state.text)
                    if parsed.calls:
                        message = {"role": "assistant", "content": parsed.content}
                        message["tool_calls"] = tool_calls_json(parsed.calls)
                    finish = finish_reason(parsed, finish)
                return [
                    {"index": index, "message": message, "logprobs": logprob_block, "finish_reason": finish}
                ]
            finish = state.finish_reason if delta.finished else None
            if tool_streams is None:
                deltas = [{"content": delta.new_text}] if delta.new_text else [{}]
            else:
                deltas, finish = tool_streams[index].deltas(state.text, delta.finished, finish)
                if not deltas and (delta.finished or logprob_block is not None):
                    deltas = [{}]
            return [
                {
                    "index": index,
                    "delta": content,
                    "logprobs": logprob_block if position == 0 else None,
                    "finish_reason": finish if position == len(deltas) - 1 else None,
                }
                for position, content in enumerate(deltas)
            ]

        if body.stream:
            streams = await start_all(context, jobs, response_id, prompt_param="messages")
            head = envelope("chat.completion.chunk", response_id, context.model_name)

            def first_chunks() -> list[dict[str, Any]]:
                return [
                    {
                        **head,
                        "choices": [
                            {
                                "index": i,
                                "delta": {"role": "assistant", "content": ""},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                    for i in range(len(streams))
                ]

            return _stream(streams, head, choice, first_chunks, body.include_usage_in_stream(), body.n)

        async def run() -> dict[str, Any]:
            states = await _collect_all(await start_all(context, jobs, response_id, prompt_param="messages"))
            return {
                **envelope("chat.completion", response_id, context.model_name),
                "choices": [choice(index, state, None)[0] for index, state in enumerate(states)],
                "usage": _usage(states, body.n),
            }

        return await unless_disconnected(request, run())

    return router


async def _collect_all(streams: list[MeteredStream]) -> list[ChoiceState]:
    results = await asyncio.gather(*(collect(stream) for stream in streams))
    states = []
    for outputs in results:
        state = ChoiceState()
        for output in outputs:
            state.add(output)
        states.append(state)
    return states


def _usage(states: list[ChoiceState], n: int) -> dict[str, int]:
    prompt_tokens = sum(state.prompt_tokens for index, state in enumerate(states) if index % n == 0)
    return usage(prompt_tokens, sum(state.completion_tokens for state in states))


ChoiceBuilder = Callable[[int, ChoiceState, RequestOutput | None], list[dict[str, Any]]]
"""A choice's final object (delta None: one), or the chunks' choices for a streamed delta."""


def _stream(
    streams: list[MeteredStream],
    head: dict[str, Any],
    choice: ChoiceBuilder,
    first_chunks: Callable[[], list[dict[str, Any]]],
    include_usage: bool,
    n: int,
) -> StreamingResponse:
    states = [ChoiceState() for _ in streams]

    async def events() -> AsyncIterator[str]:
        try:
            for chunk in first_chunks():
                yield sse_event(chunk)
            async for index, output in merge_streams(streams):
                states[index].add(output)
                if output.new_text or output.finished or output.logprobs:
                    for part in choice(index, states[index], output):
                        yield sse_event({**head, "choices": [part]})
            if include_usage:
                yield sse_event({**head, "choices": [], "usage": _usage(states, n)})
        except Exception as error:
            yield sse_event(error_body("/v1", translate(error)))
        yield sse_event("[DONE]")

    return StreamingResponse(events(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
