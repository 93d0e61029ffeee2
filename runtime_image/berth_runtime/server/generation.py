"""One generation request as the HTTP layer sees it: admitted, metered, and closed when abandoned.

Both APIs go through `start_generation`, so admission (engine loaded, prompt fits the context,
queue not full), metrics and Triton statistics behave the same whichever protocol a client speaks.
The first output is awaited before any response byte is sent: refusals raised by the engine
(queue full, prompt too long) then still become a proper HTTP status instead of a broken stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from berth_runtime.engine.errors import PromptTooLong
from berth_runtime.engine.outputs import RequestOutput
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import ApiError, translate
from berth_runtime.server.lifecycle import ServerState
from berth_runtime.server.metrics import RequestTimer
from berth_runtime.server.statistics import ModelStatistics

if TYPE_CHECKING:
    from berth_runtime.engine.async_engine import AsyncEngine

T = TypeVar("T")


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def fit_max_tokens(
    requested: Any, prompt_tokens: int, min_tokens: Any, max_model_len: int, prompt_param: str
) -> Any:
    """The output budget: the requested max_tokens capped to the context left after the prompt.

    A prompt that leaves no room for `max(1, min_tokens)` output tokens is refused (400). Values of
    the wrong type are passed through unchanged so SamplingParams names them in its error.
    """
    remaining = max_model_len - prompt_tokens
    needed = max(1, min_tokens) if isinstance(min_tokens, int) else 1
    if remaining < needed:
        raise translate(PromptTooLong(prompt_tokens, needed, max_model_len), prompt_param=prompt_param)
    if requested is None:
        return remaining
    if isinstance(requested, int) and not isinstance(requested, bool) and requested >= 1:
        return min(requested, remaining)
    return requested


class MeteredStream:
    """The engine's output iterator for one request, recording metrics and statistics as it goes.

    Closing it before the request finished (client gone, error) aborts the request in the engine,
    which frees its KV cache blocks at once.
    """

    def __init__(
        self,
        iterator: AsyncIterator[RequestOutput],
        first: RequestOutput,
        timer: RequestTimer,
        statistics: ModelStatistics,
        state: ServerState,
    ) -> None:
        self._iterator = iterator
        self._state = state
        self._pending: RequestOutput | None = first
        self._timer = timer
        self._statistics = statistics
        self._done = False
        self.prompt_tokens = first.prompt_tokens
        self.completion_tokens = 0

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if self._done:
            raise StopAsyncIteration
        if self._pending is not None:
            output, self._pending = self._pending, None
        else:
            try:
                output = await anext(self._iterator)
            except BaseException:
                await self.aclose()
                raise
        if output.finish_reason == "abort" and self._state.drain_expired:
            await self.aclose()
            raise self._state.drain_timeout_error()
        self._timer.on_output(output)
        self.prompt_tokens = output.prompt_tokens
        self.completion_tokens = output.completion_tokens
        if output.finished:
            self._done = True
            self._statistics.record_success(self._timer.arrival, self._timer.first_token_at, time.monotonic())
        return output

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._timer.on_abandoned(self.prompt_tokens, self.completion_tokens)
            self._statistics.record_failure(self._timer.arrival, time.monotonic())
        await _close(self._iterator)


async def _close(iterator: AsyncIterator[RequestOutput]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def start_generation(
    context: ServingContext,
    prompt_token_ids: list[int],
    params: SamplingParams,
    request_id: str,
    *,
    prompt_param: str = "prompt",
) -> MeteredStream:
    """Admit one request and wait for its first output; refusals raise ApiError."""
    engine = context.state.require_engine()
    timer = context.metrics.start_request()
    iterator: AsyncIterator[RequestOutput] | None = None
    try:
        iterator = engine.generate(prompt_token_ids, params, request_id)
        first = await anext(iterator)
    except BaseException as error:
        context.statistics.record_failure(timer.arrival, time.monotonic())
        if iterator is not None:
            await _close(iterator)
        if isinstance(error, Exception):
            raise translate(error, prompt_param=prompt_param) from error
        raise
    return MeteredStream(iterator, first, timer, context.statistics, context.state)


async def collect(stream: MeteredStream) -> list[RequestOutput]:
    """Every output of a stream until it finishes."""
    try:
        return [output async for output in stream]
    finally:
        await stream.aclose()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it if the client disconnects first (non-streaming responses).

    Starlette cancels streaming responses itself when the client goes; a plain handler would keep
    generating for nobody, holding KV cache blocks until max_tokens.
    """
    work_task = asyncio.ensure_future(work)

    async def wait_for_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(wait_for_disconnect())
    try:
        await asyncio.wait({work_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work_task.done():
            work_task.cancel()
            await asyncio.wait({work_task})
    if work_task.cancelled():
        raise ApiError(499, "client closed the request", code="client_closed")
    return work_task.result()


def check_fits_queue(engine: AsyncEngine, generations: int, param: str) -> None:
    """400 for a request of more generations than --max-queue: a 503 would ask for a retry that can
    never succeed, since no queue state admits it."""
    if generations > engine.max_queue:
        raise ApiError(
            400,
            f"this request asks for {generations} generations (prompts times n) but the server queues "
            f"at most {engine.max_queue} (--max-queue); accepted: at most {engine.max_queue}, so split it",
            param=param,
            code="too_many_generations",
        )


async def start_all(
    context: ServingContext,
    jobs: list[tuple[list[int], SamplingParams]],
    request_id: str,
    *,
    prompt_param: str = "prompt",
) -> list[MeteredStream]:
    """Start several generations concurrently; if any is refused, close the others and raise."""
    check_fits_queue(context.state.require_engine(), len(jobs), prompt_param)
    results = await asyncio.gather(
        *(
            start_generation(context, prompt, params, f"{request_id}-{index}", prompt_param=prompt_param)
            for index, (prompt, params) in enumerate(jobs)
        ),
        return_exceptions=True,
    )
    streams = [result for result in results if isinstance(result, MeteredStream)]
    failure = next((result for result in results if isinstance(result, BaseException)), None)
    if failure is not None:
        for stream in streams:
            await stream.aclose()
        raise failure
    return streams
