"""Reads every request body once, before any route sees it: size limit, decompression, nesting limit.

Routes used to read bodies themselves, and each way round the checks was a defect: a chunked body
over the limit surfaced inside FastAPI's parser as 400 "error parsing the body" instead of 413; a
gzip body was inflated whole after the limit was checked on its compressed size (199 KiB became
200 MiB); a truncated gzip stream raised EOFError (500); JSON nested 500 levels deep raised
RecursionError (500). Here the body is read up to `max_body_bytes` (413 beyond, whatever the
framing), inflated as a stream that stops at the same limit (413), refused when it cannot be
decoded (400), nests deeper than `MAX_JSON_DEPTH` or holds more than `MAX_JSON_VALUES` values
(400, see `json_shape`), and handed to the app decoded, with
Content-Encoding removed. Inflating and measuring run in a worker thread: the event loop keeps
answering health probes and streams meanwhile.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from berth_runtime.server.errors import ApiError, error_response
from berth_runtime.server.gate import ASGIApp, Message, Receive, Scope, Send
from berth_runtime.server.json_shape import JsonTooLarge, check_json_shape

#: Largest request body accepted (413 beyond), before and after decompression alike: far above any
#: prompt that fits a context window, far below what would let a few clients exhaust the pod's memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Content-Encoding values accepted and the zlib window bits that decode each.
_WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_INFLATE_STEP_BYTES = 1 << 20
#: Plain bodies up to this size are measured on the event loop (a few microseconds).
_INLINE_DECODE_BYTES = 64 * 1024
_BINARY_HEADER_LENGTH = b"inference-header-content-length"


class BodyMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            headers = dict(scope.get("headers", ()))
            encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
            header_length = headers.get(_BINARY_HEADER_LENGTH)
            if len(body) > _INLINE_DECODE_BYTES or encoding not in ("identity", ""):
                body = await asyncio.to_thread(self._decode, body, encoding, header_length)
            else:  # small and plain (health probes, most requests): no thread to wait for
                body = self._decode(body, encoding, header_length)
        except ApiError as refusal:
            await error_response(scope.get("path", ""), refusal)(scope, receive, send)
            return
        scope = {**scope, "headers": _decoded_headers(scope, len(body))}
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: the client's disconnect, when it comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope.get("headers", ())).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            raise self._too_large("")
        parts: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(499, "client closed the request", code="client_closed")
            part = message.get("body", b"")
            received += len(part)
            if received > self._max_body_bytes:
                raise self._too_large("")
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _decode(self, body: bytes, encoding: str, binary_header_length: bytes | None) -> bytes:
        if encoding not in ("identity", "") and body:
            body = self._inflate(body, encoding)
        json_part = body
        if binary_header_length is not None and binary_header_length.strip().isdigit():
            json_part = body[: int(binary_header_length)]  # the JSON header before binary tensors
        try:
            check_json_shape(json_part)
        except JsonTooLarge as error:
            raise ApiError(400, str(error), code="invalid_request") from None
        return body

    def _inflate(self, body: bytes, encoding: str) -> bytes:
        window_bits = _WINDOW_BITS.get(encoding)
        if window_bits is None:
            raise ApiError(
                415,
                f"Content-Encoding {encoding!r} is not supported; accepted: gzip, deflate, identity",
                code="unsupported_content_encoding",
            )
        inflater = zlib.decompressobj(window_bits)
        parts: list[bytes] = []
        produced = 0
        pending = body
        try:
            while not inflater.eof:
                part = inflater.decompress(pending, _INFLATE_STEP_BYTES)
                pending = inflater.unconsumed_tail
                if not part and not pending:
                    break  # all input read, no end marker: truncated
                produced += len(part)
                if produced > self._max_body_bytes:
                    raise self._too_large(f" once inflated ({encoding})")
                parts.append(part)
        except zlib.error as error:
            raise self._undecodable(encoding, str(error)) from None
        if not inflater.eof:
            raise self._undecodable(encoding, "the compressed stream ends before its end marker")
        if inflater.unused_data:
            raise self._undecodable(encoding, "bytes follow the end of the compressed stream")
        return b"".join(parts)

    def _too_large(self, how: str) -> ApiError:
        return ApiError(
            413,
            f"the request body exceeds {self._max_body_bytes} bytes{how}; accepted: at most "
            f"{self._max_body_bytes} bytes",
            code="request_too_large",
        )

    @staticmethod
    def _undecodable(encoding: str, reason: str) -> ApiError:
        return ApiError(
            400, f"the request body is not valid {encoding} data: {reason}", code="invalid_content_encoding"
        )


def _decoded_headers(scope: Scope, length: int) -> list[Any]:
    """The request headers as the app sees the decoded body: no Content-Encoding, its real length."""
    dropped = {b"content-encoding", b"content-length", b"transfer-encoding"}
    headers = [(name, value) for name, value in scope.get("headers", ()) if name.lower() not in dropped]
    return [*headers, (b"content-length", str(length).encode())]
