"""The outermost layer of every request: its id, its access-log line, and the last-resort error.

`X-Request-Id` is echoed on every response (one is generated when the client sent none or one that
is not a short printable token), and the id is in a context variable while the request runs, so
every log line written for it names it (the logging filter in `cli` reads it), the access line
(logger `berth_runtime.access`, at debug) included. Any exception that
no handler turned into a response becomes the JSON error shape (500) here, instead of the
framework's plain-text "Internal Server Error"; one raised after a response began can only be
logged, and the connection is closed.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

from berth_runtime.server.errors import ApiError, error_response
from berth_runtime.server.gate import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("berth_runtime.server")
access_logger = logging.getLogger("berth_runtime.access")

REQUEST_ID_HEADER = b"x-request-id"
#: What a client-sent request id may look like to be echoed; anything else is replaced.
_ACCEPTED_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        sent = dict(scope.get("headers", ())).get(REQUEST_ID_HEADER, b"")
        request_id = sent.decode() if _ACCEPTED_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        token = current_request_id.set(request_id)
        started = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        except Exception as error:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if status:
                raise  # the response began: nothing valid can follow it
            failure = ApiError(500, f"internal error: {type(error).__name__}: {error}", code="internal_error")
            await error_response(scope.get("path", ""), failure)(scope, receive, send_with_id)
        finally:
            access_logger.debug(
                '%s "%s %s" %d %.1f ms',
                _client(scope),
                scope.get("method"),
                scope.get("path"),
                status,
                (time.monotonic() - started) * 1000,
            )
            current_request_id.reset(token)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
