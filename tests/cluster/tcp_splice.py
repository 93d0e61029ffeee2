"""Joins two TCP connections byte for byte, as a kernel-level proxy would.

Why: the local service proxy carries HTTP it must not interpret -- server-sent events and chunked
token streams must reach the client as the runtime writes them, not when a buffer fills. Each
direction forwards whatever one read returns at once (asyncio sets TCP_NODELAY on its sockets), a
FIN in one direction is passed on as a FIN (half-close: a client may finish sending and still
read the answer), and a reset on either side resets the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

READ_BYTES = 65536


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes the connection with a TCP RST (SO_LINGER 0), the closest a listening socket gets to
    kube-proxy's REJECT: the client sees "connection reset" at once, not a clean, empty answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_BYTES):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    backend: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Forwards both ways until both directions ended (FIN each way) or one side reset."""
    (client_reader, client_writer), (backend_reader, backend_writer) = client, backend
    directions = {
        asyncio.ensure_future(_pipe(client_reader, backend_writer)),
        asyncio.ensure_future(_pipe(backend_reader, client_writer)),
    }
    try:
        done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
        if any(not task.cancelled() and task.exception() is not None for task in done):
            reset(client_writer)
            reset(backend_writer)
    finally:
        for task in directions:
            task.cancel()
        await asyncio.gather(*directions, return_exceptions=True)
        for writer in (client_writer, backend_writer):
            writer.close()
