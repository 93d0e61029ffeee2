"""Server-sent events and the merging of several generation streams into one response.

A response with several choices (OpenAI `n`, a list of prompts, a KServe batch of texts) runs one
engine request per choice concurrently and interleaves their outputs as they come, tagged with the
choice index. Closing the merged stream closes every member, aborting unfinished requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from berth_runtime.engine.outputs import RequestOutput
from berth_runtime.server.generation import MeteredStream

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"

_END = object()


def sse_event(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


async def merge_streams(streams: Sequence[MeteredStream]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Outputs of all streams as (index, output), in arrival order; ends when all have finished."""
    if len(streams) == 1:
        try:
            async for output in streams[0]:
                yield 0, output
        finally:
            await streams[0].aclose()
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, stream: MeteredStream) -> None:
        try:
            async for output in stream:
                await queue.put((index, output))
            await queue.put((index, _END))
        except Exception as error:
            await queue.put((index, error))

    tasks = [asyncio.ensure_future(pump(index, stream)) for index, stream in enumerate(streams)]
    remaining = len(streams)
    try:
        while remaining:
            index, item = await queue.get()
            if item is _END:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
