"""The door every request passes: API key, drain refusal, in-flight count and HTTP status metrics.

A pure ASGI middleware (not a FastAPI dependency) because it must see the whole life of a response,
streamed bodies included: the in-flight count that drain waits on drops only when the last byte of
a stream has been sent. Health probes and /metrics stay open without a key and during drain.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from berth_runtime.server.errors import DRAINING_RETRY_AFTER_SECONDS, ApiError, error_response, is_openai_path
from berth_runtime.server.lifecycle import ServerState
from berth_runtime.server.metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics", "/health"})


def read_api_key(path: str | None) -> str | None:
    """The key in --api-key-file (surrounding whitespace stripped); ValueError if unusable."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.read().strip()
    except OSError as error:
        raise ValueError(f"invalid api_key_file={path!r}: cannot read it ({error.strerror})") from None
    if not key:
        raise ValueError(
            f"invalid api_key_file={path!r}: the file is empty; accepted: a file holding the key"
        )
    return key


class GateMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        state: ServerState,
        metrics: ServerMetrics,
        api_key: str | None,
    ) -> None:
        self._app = app
        self._state = state
        self._metrics = metrics
        self._expected_authorization = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        api = "openai" if is_openai_path(path) else "kserve"
        refusal = self._refusal(scope)
        if refusal is not None:
            self._metrics.http_request_done(api, refusal.status)
            await error_response(path, refusal)(scope, receive, send)
            return
        status = 500
        self._state.request_started()

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_and_observe)
        finally:
            self._state.request_finished()
            self._metrics.http_request_done(api, status)

    def _refusal(self, scope: Scope) -> ApiError | None:
        if self._expected_authorization is not None:
            sent = dict(scope.get("headers", ())).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self._expected_authorization):
                reason = "is missing" if not sent else "is wrong"
                return ApiError(
                    401,
                    f"the API key {reason}: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if self._state.is_draining:
            return ApiError(
                503,
                "the server is shutting down (draining) and accepts no new requests; "
                "retry on another replica",
                code="draining",
                headers={"Retry-After": str(DRAINING_RETRY_AFTER_SECONDS), "Connection": "close"},
            )
        return None
