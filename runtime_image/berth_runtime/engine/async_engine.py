"""The engine as the server sees it: `generate()` returns an async stream of output deltas.

The model steps run in one worker thread (torch releases the GIL, so the event loop stays
responsive); requests and aborts cross into it through a queue and are applied between steps, and
each step's outputs come back to the event loop in one `call_soon_threadsafe`. Closing or
cancelling a stream (the client went away) aborts its request, which frees its KV blocks before
the next step.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import replace

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.errors import EngineFailed, EngineNotRunning, PromptTooLong, QueueFull
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.outputs import EngineStats, RequestOutput
from berth_runtime.parallel.launcher import WorkerPool
from berth_runtime.sampling_params import InvalidParameter, SamplingParams
from berth_runtime.tokenizer import Tokenizer

__all__ = ["AsyncEngine", "EngineFailed", "EngineNotRunning", "PromptTooLong", "QueueFull"]

logger = logging.getLogger(__name__)

_Command = tuple[str, str, list[int] | None, SamplingParams | None]


class AsyncEngine:
    def __init__(
        self,
        engine: LLMEngine,
        tokenizer: Tokenizer,
        max_model_len: int,
        max_queue: int,
        workers: WorkerPool | None = None,
    ) -> None:
        self.engine = engine
        self._workers = workers
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.max_queue = max_queue
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._streams: dict[str, asyncio.Queue[RequestOutput | BaseException]] = {}
        self._stats = EngineStats()
        self._pending_adds = 0
        self._pending_lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> AsyncEngine:
        """Loads the model and tokenizer named by `config` (raises ValueError on a bad directory)."""
        built = build_engine(config)
        return cls(built.engine, built.tokenizer, built.max_model_len, config.max_queue, built.workers)

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="berth-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stops the step loop; requests still in flight end with finish_reason "abort". Then, at
        tensor parallelism, the workers leave their loop and rank 0 the group: a clean stop between
        steps (the exit hook's SIGTERM is for the paths that never get here)."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._thread = None
        for request_id, stream in list(self._streams.items()):
            stream.put_nowait(_aborted(request_id))
        self._streams.clear()
        workers, self._workers = self._workers, None
        if workers is not None:
            await asyncio.get_running_loop().run_in_executor(None, workers.stop)

    def stats(self) -> EngineStats:
        return replace(self._stats, num_waiting=self._stats.num_waiting + self._pending_adds)

    def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        """Queues a request; raises PromptTooLong, QueueFull, InvalidParameter or EngineNotRunning now."""
        if self._thread is None or self._loop is None:
            raise EngineNotRunning("the engine is not running (start() it first)")
        if not prompt_token_ids:
            raise InvalidParameter("prompt", prompt_token_ids, "a prompt of at least one token")
        if any(not 0 <= token < self.engine.vocab_size for token in prompt_token_ids):
            raise InvalidParameter("prompt", "token ids", f"ids in 0..{self.engine.vocab_size - 1}")
        params.check_logit_bias_ids(self.engine.vocab_size)
        min_output = max(params.min_tokens, 1)
        if len(prompt_token_ids) + min_output > self.max_model_len:
            raise PromptTooLong(len(prompt_token_ids), min_output, self.max_model_len)
        if request_id in self._streams:
            raise ValueError(f"request id {request_id!r} is already in flight")
        if self.stats().num_waiting >= self.max_queue:
            raise QueueFull(self.max_queue)
        stream: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()
        self._streams[request_id] = stream
        with self._pending_lock:
            self._pending_adds += 1
        self._commands.put(("add", request_id, list(prompt_token_ids), params))
        self._wake.set()
        return self._iterate(request_id, stream)

    async def _iterate(
        self, request_id: str, stream: asyncio.Queue[RequestOutput | BaseException]
    ) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            while True:
                item = await stream.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Ends a request; its blocks are freed before the engine's next step."""
        if self._streams.pop(request_id, None) is not None:
            self._commands.put(("abort", request_id, None, None))
            self._wake.set()

    # ---- worker thread -------------------------------------------------------------------------

    def _apply_commands(self) -> None:
        while True:
            try:
                kind, request_id, prompt, params = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "add" and prompt is not None and params is not None:
                with self._pending_lock:
                    self._pending_adds -= 1
                try:
                    self.engine.add_request(request_id, prompt, params)
                except ValueError as error:  # e.g. its id is still finishing: fail it, keep serving
                    assert self._loop is not None
                    failure = EngineFailed(f"request {request_id!r} was not started: {error}")
                    self._loop.call_soon_threadsafe(self._deliver_failure, [request_id], failure)
            elif kind == "abort":
                self.engine.abort_request(request_id)

    def _run(self) -> None:
        while not self._stopping:
            self._apply_commands()
            if not self.engine.has_unfinished_requests():
                self._publish([])
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as error:  # a failed step must not leave clients waiting forever
                logger.exception("engine step failed; failing the requests in flight")
                self._fail_all(error)
                continue
            self._publish(outputs)
        self._apply_commands()  # requests queued while stopping end with the others
        for seq in [*self.engine.scheduler.running, *self.engine.scheduler.waiting]:
            self.engine.abort_request(seq.request_id)
        self._stats = self.engine.stats()

    def _fail_all(self, error: Exception) -> None:
        failure = EngineFailed(f"the engine failed while running this request: {error}")
        request_ids = [
            seq.request_id for seq in [*self.engine.scheduler.running, *self.engine.scheduler.waiting]
        ]
        for request_id in request_ids:
            self.engine.abort_request(request_id)
        self._stats = self.engine.stats()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver_failure, request_ids, failure)

    def _publish(self, outputs: list[RequestOutput]) -> None:
        self._stats = self.engine.stats()
        if outputs:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._deliver, outputs)

    # ---- event loop ----------------------------------------------------------------------------

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            stream = self._streams.get(output.request_id)
            if stream is None:
                continue
            stream.put_nowait(output)
            if output.finished:
                del self._streams[output.request_id]

    def _deliver_failure(self, request_ids: list[str], failure: EngineFailed) -> None:
        for request_id in request_ids:
            stream = self._streams.pop(request_id, None)
            if stream is not None:
                stream.put_nowait(failure)


def _aborted(request_id: str) -> RequestOutput:
    return RequestOutput(
        request_id=request_id,
        new_token_ids=[],
        new_text="",
        finished=True,
        finish_reason="abort",
        prompt_tokens=0,
        completion_tokens=0,
    )
