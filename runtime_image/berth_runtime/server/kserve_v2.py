"""KServe v2 / Triton HTTP protocol: health, server and model metadata, statistics and `infer`.

The model takes `text_input` (BYTES, one prompt per element) and returns `text_output` (BYTES, the
generated text per element, same shape), with generation settings as described in
`kserve_params`. Requests and responses use the JSON form or the binary tensor data extension,
whichever the client chose; `tritonclient.http` chooses binary.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth_runtime.sampling_params import SamplingParams
from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import ApiError, model_not_found
from berth_runtime.server.generation import (
    check_fits_queue,
    collect,
    fit_max_tokens,
    new_request_id,
    start_all,
    unless_disconnected,
)
from berth_runtime.server.kserve_codec import (
    HEADER_LENGTH_HEADER,
    InferenceProtocolError,
    InferRequest,
    Tensor,
    encode_infer_response,
    parse_infer_request,
)
from berth_runtime.server.kserve_params import (
    GENERATION_INPUTS,
    TEXT_INPUT,
    TEXT_OUTPUT,
    GenerationSettings,
    accepted_names,
    generation_settings,
)
from berth_runtime.server.prompts import encode_text
from berth_runtime.server.statistics import MODEL_VERSION

SERVER_NAME = "berth"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "statistics", "model_configuration", "generate"]
PLATFORM = "berth"
_CONFIG_TYPES = {
    "BYTES": "TYPE_STRING",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP32": "TYPE_FP32",
    "BOOL": "TYPE_BOOL",
}


def check_model(context: ServingContext, model_name: str, version: str | None = None) -> None:
    if model_name != context.model_name:
        raise model_not_found(model_name, context.model_name)
    if version not in (None, "", MODEL_VERSION):
        raise ApiError(
            404,
            f"model {model_name!r} has no version {version!r}; it has version {MODEL_VERSION!r}",
            code="model_not_found",
        )


def model_metadata(context: ServingContext) -> dict[str, Any]:
    inputs = [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]
    inputs += [
        {"name": name, "datatype": dtype, "shape": shape}
        for name, (dtype, shape) in GENERATION_INPUTS.items()
    ]
    return {
        "name": context.model_name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [{"name": TEXT_OUTPUT, "datatype": "BYTES", "shape": [-1]}],
    }


def model_config(context: ServingContext) -> dict[str, Any]:
    def entry(name: str, dtype: str, shape: list[int], optional: bool) -> dict[str, Any]:
        return {"name": name, "data_type": _CONFIG_TYPES[dtype], "dims": shape, "optional": optional}

    inputs = [entry(TEXT_INPUT, "BYTES", [-1], False)]
    inputs += [entry(name, dtype, shape, True) for name, (dtype, shape) in GENERATION_INPUTS.items()]
    return {
        "name": context.model_name,
        "platform": PLATFORM,
        "backend": PLATFORM,
        "max_batch_size": 0,
        "input": inputs,
        "output": [{"name": TEXT_OUTPUT, "data_type": "TYPE_STRING", "dims": [-1]}],
        "parameters": {"max_model_len": {"string_value": str(_max_model_len(context))}},
    }


def _max_model_len(context: ServingContext) -> int | str:
    engine = context.state.engine
    return engine.max_model_len if engine is not None else context.config.max_model_len or ""


def build_router(context: ServingContext) -> APIRouter:
    router = APIRouter()
    state = context.state

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200 if state.is_ready else 503)

    @router.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    @router.post("/v2/repository/index")
    async def repository_index() -> list[dict[str, str]]:
        model_state = "READY" if state.is_ready else "UNAVAILABLE"
        return [{"name": context.model_name, "version": MODEL_VERSION, "state": model_state}]

    @router.get("/v2/models/{model_name}")
    @router.get("/v2/models/{model_name}/versions/{version}")
    async def metadata(model_name: str, version: str | None = None) -> dict[str, Any]:
        check_model(context, model_name, version)
        return model_metadata(context)

    @router.get("/v2/models/{model_name}/config")
    @router.get("/v2/models/{model_name}/versions/{version}/config")
    async def config(model_name: str, version: str | None = None) -> dict[str, Any]:
        check_model(context, model_name, version)
        return model_config(context)

    @router.get("/v2/models/{model_name}/ready")
    @router.get("/v2/models/{model_name}/versions/{version}/ready")
    async def model_ready(model_name: str, version: str | None = None) -> Response:
        check_model(context, model_name, version)
        return Response(status_code=200 if state.is_ready else 503)

    @router.get("/v2/models/{model_name}/stats")
    @router.get("/v2/models/{model_name}/versions/{version}/stats")
    async def stats(model_name: str, version: str | None = None) -> JSONResponse:
        check_model(context, model_name, version)
        return JSONResponse(context.statistics.to_json())

    @router.post("/v2/models/{model_name}/infer")
    @router.post("/v2/models/{model_name}/versions/{version}/infer")
    async def infer(model_name: str, request: Request, version: str | None = None) -> Response:
        check_model(context, model_name, version)
        infer_request = parse_infer_request(await request.body(), _header_length(request))
        prompts, settings = _prompts_and_settings(infer_request)
        texts = await unless_disconnected(request, _generate_texts(context, prompts, settings))
        text_tensor = infer_request.input(TEXT_INPUT)
        shape = text_tensor.shape if text_tensor is not None else [len(texts)]
        output = Tensor(
            name=TEXT_OUTPUT, datatype="BYTES", shape=shape, values=[text.encode() for text in texts]
        )
        binary = {TEXT_OUTPUT} if infer_request.wants_binary(TEXT_OUTPUT) else set()
        body, header_length = encode_infer_response(
            model_name=context.model_name,
            model_version=MODEL_VERSION,
            request_id=infer_request.id,
            outputs=[output],
            binary_outputs=binary,
        )
        if header_length is None:
            return Response(body, media_type="application/json")
        return Response(
            body, media_type="application/octet-stream", headers={HEADER_LENGTH_HEADER: str(header_length)}
        )

    return router


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(HEADER_LENGTH_HEADER)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InferenceProtocolError(f"{HEADER_LENGTH_HEADER} must be an integer, got {raw!r}") from None


def _prompts_and_settings(infer_request: InferRequest) -> tuple[list[str], GenerationSettings]:
    unknown_outputs = [output.name for output in infer_request.outputs if output.name != TEXT_OUTPUT]
    if unknown_outputs:
        raise ApiError(
            400, f"unknown output '{unknown_outputs[0]}'; this model has one output: {TEXT_OUTPUT}"
        )
    unknown_inputs = [
        t.name for t in infer_request.inputs if t.name != TEXT_INPUT and t.name not in GENERATION_INPUTS
    ]
    if unknown_inputs:
        raise ApiError(
            400,
            f"unknown input '{unknown_inputs[0]}'; accepted: {TEXT_INPUT}, {accepted_names()}",
            param=unknown_inputs[0],
        )
    text_tensor = infer_request.input(TEXT_INPUT)
    if text_tensor is None:
        raise ApiError(400, f"input '{TEXT_INPUT}' (BYTES) is required", param=TEXT_INPUT)
    if text_tensor.datatype != "BYTES":
        raise ApiError(
            400, f"input '{TEXT_INPUT}' must be BYTES, got {text_tensor.datatype}", param=TEXT_INPUT
        )
    if not text_tensor.values:
        raise ApiError(400, f"input '{TEXT_INPUT}' has no elements", param=TEXT_INPUT)
    try:
        prompts = [value.decode("utf-8") for value in text_tensor.values]
    except UnicodeDecodeError as error:
        raise ApiError(400, f"input '{TEXT_INPUT}' is not UTF-8 text: {error}", param=TEXT_INPUT) from None
    tensor_values: dict[str, list[Any]] = {}
    for tensor in infer_request.inputs:
        if tensor.name != TEXT_INPUT:
            tensor_values[tensor.name] = tensor.values
    return prompts, generation_settings(infer_request.parameters, tensor_values)


def sampling_params_for(
    context: ServingContext, prompt_ids: list[int], settings: GenerationSettings
) -> SamplingParams:
    sampling = dict(settings.sampling)
    sampling["max_tokens"] = fit_max_tokens(
        sampling.get("max_tokens", SamplingParams.max_tokens),
        len(prompt_ids),
        sampling.get("min_tokens", 0),
        context.state.require_engine().max_model_len,
        TEXT_INPUT,
    )
    return SamplingParams(**sampling)


async def _generate_texts(
    context: ServingContext, prompts: list[str], settings: GenerationSettings
) -> list[str]:
    engine = context.state.require_engine()
    check_fits_queue(engine, len(prompts), TEXT_INPUT)
    jobs = []
    for prompt in prompts:
        prompt_ids = await encode_text(engine, prompt, TEXT_INPUT)
        jobs.append((prompt_ids, sampling_params_for(context, prompt_ids, settings)))
    streams = await start_all(context, jobs, new_request_id("infer"), prompt_param=TEXT_INPUT)
    outputs = await asyncio.gather(*(collect(stream) for stream in streams))
    texts = ["".join(output.new_text for output in stream_outputs) for stream_outputs in outputs]
    if not settings.exclude_input_in_output:
        texts = [prompt + text for prompt, text in zip(prompts, texts, strict=True)]
    return texts
