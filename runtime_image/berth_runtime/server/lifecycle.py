"""The server's life: loading, warm-up, ready, draining, stopped.

Readiness means "weights loaded and warm-up generations succeeded" (the architecture's rule), so a
pod never receives traffic it would serve slowly or not at all. Liveness holds from the first
moment, so a slow load is not mistaken for a hung process.

On SIGTERM the server turns not-ready at once and refuses new requests with 503, while requests
and streams already admitted run to completion, for at most --drain-timeout seconds; then the
process exits 0. Requests still in flight when the timeout passes end with a 503 (an error event
and `[DONE]` in a stream) before the process exits. The count of in-flight requests that drain
waits on is kept by the gate middleware, which admits every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from berth_runtime.cold_start import STAGE_DOWNLOAD, STAGE_LOAD, STAGE_WARMUP, recorded_fetch_seconds
from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.outputs import EngineStats
from berth_runtime.models.model_config import ModelDirectoryError, UnsupportedModelError
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.server.errors import DRAINING_RETRY_AFTER_SECONDS, ApiError

if TYPE_CHECKING:
    from berth_runtime.engine.async_engine import AsyncEngine

logger = logging.getLogger("berth_runtime.server")

WARMUP_TEXT = "berth warm-up: the quick brown fox jumps over the lazy dog"
WARMUP_MAX_TOKENS = 4


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


def load_engine(config: RuntimeConfig) -> AsyncEngine:
    from berth_runtime.engine.async_engine import AsyncEngine

    return AsyncEngine.from_config(config)


class ServerState:
    """Phase, engine and in-flight count of one server process."""

    def __init__(
        self, config: RuntimeConfig, engine_factory: Callable[[RuntimeConfig], AsyncEngine] = load_engine
    ) -> None:
        self.config = config
        self.phase = Phase.LOADING
        self.engine: AsyncEngine | None = None
        self.exit_code = 0
        self.request_exit: Callable[[], None] = lambda: None
        """Set by the runner: asks the HTTP server to shut down (used when loading fails)."""
        self._engine_factory = engine_factory
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.drain_expired = False
        """True once --drain-timeout passed: requests still running end with `drain_timeout_error`."""
        self.cold_start_seconds: dict[str, float] = {}
        """Seconds each stage of this replica's start took (`berth_runtime.cold_start`), as measured."""

    @property
    def is_ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def is_draining(self) -> bool:
        return self.phase is Phase.DRAINING

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def engine_stats(self) -> EngineStats | None:
        engine = self.engine
        return engine.stats() if engine is not None else None

    def require_engine(self) -> AsyncEngine:
        """The engine, or a 503 saying why there is none to serve this request."""
        if self.engine is None or self.phase is Phase.LOADING:
            raise ApiError(
                503,
                "the model is still loading or warming up; retry when /v2/health/ready says ready",
                code="model_loading",
                headers={"Retry-After": str(DRAINING_RETRY_AFTER_SECONDS)},
            )
        if self.phase is Phase.FAILED:
            raise ApiError(503, "the model failed to load; see the server log", code="model_failed")
        return self.engine

    def request_started(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def begin_drain(self) -> None:
        if self.phase is not Phase.DRAINING:
            logger.info("draining: not ready, refusing new requests; %d in flight", self._in_flight)
            self.phase = Phase.DRAINING

    async def expire_drain(self) -> None:
        """The drain timeout passed: stop the engine, so every request still queued or running ends
        now, each with a proper error (JSON 503, or an error event and [DONE] in a stream)."""
        self.drain_expired = True
        await self.stop_engine()

    def drain_timeout_error(self) -> ApiError:
        return ApiError(
            503,
            f"the server shut down before this request finished: its drain timeout "
            f"({self.config.drain_timeout:g} s, --drain-timeout) passed; retry on another replica",
            code="drain_timeout",
            headers={"Retry-After": str(DRAINING_RETRY_AFTER_SECONDS)},
        )

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if `timeout` seconds passed first."""
        if self._in_flight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def load(self) -> None:
        """Load the model in a daemon thread, start the engine, warm it up, then turn ready."""
        started = time.monotonic()
        download = recorded_fetch_seconds(Path(self.config.model))
        if download is not None:
            self.cold_start_seconds[STAGE_DOWNLOAD] = download
        try:
            engine = await _in_daemon_thread(self._engine_factory, self.config)
            self.engine = engine
            await engine.start()
            loaded = time.monotonic()
            self.cold_start_seconds[STAGE_LOAD] = loaded - started
            await warm_up(engine, self.config.warmup_prompts)
            self.cold_start_seconds[STAGE_WARMUP] = time.monotonic() - loaded
        except Exception as error:
            self.phase = Phase.FAILED
            refused = isinstance(error, UnsupportedModelError) or not isinstance(error, ModelDirectoryError)
            if isinstance(error, ValueError) and refused:
                # a flag that only the loaded model can check (the KV cache derived from device
                # memory), or a model this runtime does not serve: a usage error, exit 2 with its
                # message as before weights load
                logger.error("loading %s refused: %s", self.config.model, error)
                self.exit_code = 2
            else:
                logger.exception("loading %s failed", self.config.model)
                self.exit_code = 1
            self.request_exit()
            return
        if self.phase is Phase.LOADING:
            self.phase = Phase.READY
            logger.info(
                "model %r ready after %.1f s (loaded and %d warm-up generation(s))",
                self.config.model_name,
                time.monotonic() - started,
                self.config.warmup_prompts,
            )

    async def stop_engine(self) -> None:
        if self.engine is not None:
            await self.engine.stop()


async def warm_up(engine: AsyncEngine, count: int) -> None:
    """Run `count` short greedy generations concurrently; raises if any fails."""
    prompt = engine.tokenizer.encode(WARMUP_TEXT)[: max(1, engine.max_model_len // 2)]
    max_tokens = max(1, min(WARMUP_MAX_TOKENS, engine.max_model_len - len(prompt)))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)

    async def one(index: int) -> None:
        produced = 0
        async for output in engine.generate(prompt, params, f"warmup-{index}"):
            produced = output.completion_tokens
        if produced < 1:
            raise RuntimeError(f"warm-up generation {index} produced no tokens")

    await asyncio.gather(*(one(index) for index in range(count)))


async def _in_daemon_thread(
    function: Callable[[RuntimeConfig], AsyncEngine], config: RuntimeConfig
) -> AsyncEngine:
    """Like asyncio.to_thread, but a shutdown during loading does not wait for the load to end.

    The loader thread is then parked, never ended: once the thread that first ran torch's CPU ops
    exits, later CPU ops in other threads run many times slower (measured on the tiny test model:
    200 tokens in 5 s instead of 0.2 s), so it must outlive the engine. Parked, it costs nothing,
    and as a daemon it never holds up the process's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[AsyncEngine] = loop.create_future()

    def settle(result: AsyncEngine | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: AsyncEngine | None = None
        failure: BaseException | None = None
        try:
            result = function(config)
        except BaseException as error:
            failure = error
        with contextlib.suppress(RuntimeError):  # the loop closed while loading: nobody is waiting
            loop.call_soon_threadsafe(settle, result, failure)
        threading.Event().wait()

    threading.Thread(target=run, name="berth-model-loader", daemon=True).start()
    return await future
