"""Byte forwarding between a client's connection and a backend's, as the local service proxy does
it: each write passed on as it happens (streaming), and a half-close passed on with the answer still
coming back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.cluster.tcp_splice import splice


@contextlib.asynccontextmanager
async def _spliced(backend_handler: Any) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A client connected through ``splice`` to a backend server running ``backend_handler``;
    every connection is ended on exit, even when the test fails halfway."""
    handlers: set[asyncio.Task[Any]] = set()

    def tracked(handler: Any) -> Any:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.add(asyncio.current_task())  # type: ignore[arg-type]
            await handler(reader, writer)

        return run

    backend = await asyncio.start_server(tracked(backend_handler), "127.0.0.1", 0)
    backend_port = backend.sockets[0].getsockname()[1]

    async def proxy_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await splice((reader, writer), await asyncio.open_connection("127.0.0.1", backend_port))

    proxy = await asyncio.start_server(tracked(proxy_handler), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.sockets[0].getsockname()[1])
    try:
        yield reader, writer
    finally:
        writer.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        backend.close()
        proxy.close()


async def test_splice_passes_each_write_through_as_it_happens() -> None:
    async def streamer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(4):
            writer.write(f"data: {n}\n\n".encode())
            await writer.drain()
            await asyncio.sleep(0.15)
        writer.close()

    async with _spliced(streamer) as (reader, _):
        arrivals = []
        started = time.monotonic()
        for n in range(4):
            event = f"data: {n}\n\n".encode()
            assert await asyncio.wait_for(reader.readexactly(len(event)), 2) == event
            arrivals.append(time.monotonic() - started)
        assert await asyncio.wait_for(reader.read(), 2) == b""
    assert arrivals[0] < 0.1, arrivals  # the first event did not wait for the rest
    assert all(later - earlier > 0.1 for earlier, later in itertools.pairwise(arrivals)), arrivals


async def test_splice_passes_a_half_close_on_and_the_answer_still_comes_back() -> None:
    async def counter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until the client's FIN arrives
        writer.write(f"got {len(received)} bytes".encode())
        writer.close()

    async with _spliced(counter) as (reader, writer):
        writer.write(b"x" * 200_000)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
    assert answer == b"got 200000 bytes"
