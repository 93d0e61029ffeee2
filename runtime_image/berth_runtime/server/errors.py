"""Every refusal the server makes, as JSON with a message a client can act on.

One exception type (`ApiError`) carries the HTTP status, the message, the offending parameter and
any headers (Retry-After). Its body takes the shape each API's clients parse: OpenAI's
`{"error": {"message", "type", "param", "code"}}` under /v1, Triton's `{"error": "message"}`
(what `tritonclient` reads) everywhere else. Engine and validation exceptions are translated here,
in one place, so the status for a given failure is the same on every route.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from berth_runtime.engine.errors import EngineNotRunning, PromptTooLong, QueueFull
from berth_runtime.sampling_params import InvalidParameter
from berth_runtime.server.kserve_codec import InferenceProtocolError

logger = logging.getLogger("berth_runtime.server")

QUEUE_FULL_RETRY_AFTER_SECONDS = 1
DRAINING_RETRY_AFTER_SECONDS = 5

_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    500: "internal_server_error",
    503: "service_unavailable_error",
}


class ApiError(Exception):
    """A request the server refuses; rendered by `error_response`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


#: vLLM's routes outside /v1, answered in the OpenAI error shape as vLLM does.
_OPENAI_SHAPED_PATHS = frozenset({"/tokenize", "/detokenize", "/version"})


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/") or path in _OPENAI_SHAPED_PATHS


def error_body(path: str, error: ApiError) -> dict[str, Any]:
    if is_openai_path(path):
        return {
            "error": {
                "message": error.message,
                "type": _OPENAI_ERROR_TYPES.get(error.status, "invalid_request_error"),
                "param": error.param,
                "code": error.code,
            }
        }
    return {"error": error.message}


def error_response(path: str, error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(path, error), status_code=error.status, headers=error.headers)


def translate(error: Exception, *, prompt_param: str = "prompt") -> ApiError:
    """The ApiError for an exception raised while admitting or running a request."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, InvalidParameter):
        return ApiError(400, str(error), param=error.param_name, code="invalid_parameter")
    if isinstance(error, PromptTooLong):
        return ApiError(400, str(error), param=prompt_param, code="context_length_exceeded")
    if isinstance(error, QueueFull):
        return ApiError(
            503,
            str(error),
            code="queue_full",
            headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_SECONDS)},
        )
    if isinstance(error, EngineNotRunning):
        return ApiError(
            503,
            "the engine is not running (starting up or shutting down); retry later",
            code="engine_not_running",
            headers={"Retry-After": str(DRAINING_RETRY_AFTER_SECONDS)},
        )
    if isinstance(error, InferenceProtocolError):
        return ApiError(400, str(error), code="invalid_request")
    logger.exception("request failed", exc_info=error)
    return ApiError(500, f"internal error: {type(error).__name__}: {error}", code="internal_error")


def model_not_found(requested: str | None, served: str) -> ApiError:
    return ApiError(
        404,
        f"model {requested!r} does not exist on this server; it serves {served!r}",
        param="model",
        code="model_not_found",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception the app can raise to the JSON error shapes above."""

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        return error_response(request.url.path, translate(error))

    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request.url.path, validation_error(error))

    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.method} {request.url.path}"}.get(
            error.status_code, str(error.detail)
        )
        return error_response(request.url.path, ApiError(error.status_code, message, headers=error.headers))

    for error_type in (
        ApiError,
        InvalidParameter,
        PromptTooLong,
        QueueFull,
        EngineNotRunning,
        InferenceProtocolError,
    ):
        app.add_exception_handler(error_type, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})


def _is_union_tag(part: object) -> bool:
    """Pydantic names the member of a union it tried in `loc` ('str', 'list[int]', ...)."""
    return isinstance(part, str) and (part in _TYPE_NAMES or "[" in part or part.startswith("function-"))


def validation_error(error: RequestValidationError) -> ApiError:
    """A 400 naming the first invalid field of a request body (FastAPI would say 422 without a param)."""
    errors = error.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}")
    location = [part for part in first.get("loc", ()) if part != "body"]
    path = [str(part) for part in location if not _is_union_tag(part)]
    param = ".".join(path) or None
    if not location:  # the body as a whole: absent, not an object, or not sent as JSON
        return ApiError(
            400,
            "the request body must be a JSON object sent with Content-Type: application/json",
            code="invalid_request",
        )
    if first.get("type") == "missing":
        return ApiError(400, f"'{param}' is required", param=param, code="invalid_parameter")
    if len(path) < len(location):
        accepted = sorted(
            {str(part) for entry in errors for part in entry.get("loc", ()) if _is_union_tag(part)}
        )
        message = f"invalid value for '{param}': accepted types: {', '.join(accepted)}"
    else:
        message = f"invalid value for '{param}': {first.get('msg', 'invalid request')}"
        received = first.get("input")
        if param is not None and not isinstance(received, dict | list):
            message += f" (got {received!r})"
    return ApiError(400, message, param=param, code="invalid_parameter")
