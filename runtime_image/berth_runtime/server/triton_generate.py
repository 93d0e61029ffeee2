"""Triton's generate extension: `POST /v2/models/{m}/generate` and `generate_stream` (SSE).

A JSON body with `text_input`, generation settings as top-level fields or under `parameters`
(Triton maps top-level fields to inputs); the reply carries `text_output`. The streaming variant
sends one server-sent event per engine output with the new text; an error after the stream began
arrives as an event `{"error": ...}`, as Triton does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import ApiError, translate
from berth_runtime.server.generation import (
    MeteredStream,
    collect,
    new_request_id,
    start_generation,
    unless_disconnected,
)
from berth_runtime.server.kserve_params import (
    TEXT_INPUT,
    TEXT_OUTPUT,
    GenerationSettings,
    generation_settings,
)
from berth_runtime.server.kserve_v2 import check_model, sampling_params_for
from berth_runtime.server.prompts import encode_text
from berth_runtime.server.statistics import MODEL_VERSION
from berth_runtime.server.streams import SSE_HEADERS, SSE_MEDIA_TYPE, sse_event


async def _parse(request: Request) -> tuple[str, GenerationSettings, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as error:
        raise ApiError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object with 'text_input'")
    text = body.pop(TEXT_INPUT, None)
    if not isinstance(text, str):
        raise ApiError(400, f"'{TEXT_INPUT}' must be a string, got {text!r}", param=TEXT_INPUT)
    request_id = body.pop("id", None)
    parameters = body.pop("parameters", None) or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "'parameters' must be a JSON object", param="parameters")
    merged = {**parameters, **body}
    return text, generation_settings(merged, {}), request_id


def build_router(context: ServingContext) -> APIRouter:
    router = APIRouter()

    async def open_stream(
        request: Request, model_name: str, version: str | None
    ) -> tuple[str, GenerationSettings, Any, MeteredStream]:
        check_model(context, model_name, version)
        text, settings, request_id = await _parse(request)
        prompt_ids = await encode_text(context.state.require_engine(), text, TEXT_INPUT)
        params = sampling_params_for(context, prompt_ids, settings)
        stream = await start_generation(
            context, prompt_ids, params, new_request_id("generate"), prompt_param=TEXT_INPUT
        )
        return text, settings, request_id, stream

    def reply(text: str, request_id: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model_name": context.model_name,
            "model_version": MODEL_VERSION,
            TEXT_OUTPUT: text,
        }
        if request_id is not None:
            body["id"] = request_id
        return body

    @router.post("/v2/models/{model_name}/generate")
    @router.post("/v2/models/{model_name}/versions/{version}/generate")
    async def generate(model_name: str, request: Request, version: str | None = None) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            text, settings, request_id, stream = await open_stream(request, model_name, version)
            generated = "".join(output.new_text for output in await collect(stream))
            return reply(generated if settings.exclude_input_in_output else text + generated, request_id)

        return await unless_disconnected(request, run())

    @router.post("/v2/models/{model_name}/generate_stream")
    @router.post("/v2/models/{model_name}/versions/{version}/generate_stream")
    async def generate_stream(
        model_name: str, request: Request, version: str | None = None
    ) -> StreamingResponse:
        text, settings, request_id, stream = await open_stream(request, model_name, version)

        async def events() -> AsyncIterator[str]:
            try:
                if not settings.exclude_input_in_output:
                    yield sse_event(reply(text, request_id))
                async for output in stream:
                    if output.new_text or output.finished:
                        yield sse_event(reply(output.new_text, request_id))
            except Exception as error:
                yield sse_event({"error": translate(error).message})
            finally:
                await stream.aclose()

        return StreamingResponse(events(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)

    return router
