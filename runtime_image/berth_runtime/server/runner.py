"""`python -m berth_runtime serve`: the uvicorn server with berth's drain-on-SIGTERM behaviour.

Uvicorn's own SIGTERM handling closes the listening socket and re-raises the signal after
shutdown (exit status 143). Kubernetes needs something else: keep answering, so health probes see
"not ready" and late requests get a 503 rather than a refused connection, let admitted work
finish for up to --drain-timeout, then exit 0. `DrainingServer` replaces the signal handler to do
exactly that; a second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn

from berth_runtime.config import RuntimeConfig
from berth_runtime.server.app import create_app
from berth_runtime.server.context import ServingContext
from berth_runtime.server.gate import read_api_key
from berth_runtime.server.lifecycle import ServerState
from berth_runtime.server.metrics import ServerMetrics
from berth_runtime.server.metrics_port import serve_metrics
from berth_runtime.server.statistics import ModelStatistics

logger = logging.getLogger("berth_runtime.server")

#: After the drain, how long uvicorn may take to close idle keep-alive connections.
CLOSE_CONNECTIONS_TIMEOUT_SECONDS = 5.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, drain_timeout: float) -> None:
        super().__init__(config)
        self._state = state
        self._drain_timeout = drain_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._signalled = False

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: the first SIGTERM/SIGINT starts the drain, a second one exits at once."""
        if self._signalled or self._loop is None:
            logger.warning("second signal %s: exiting without waiting for in-flight requests", sig)
            self.should_exit = True
            self.force_exit = True
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        logger.info("received signal %s: draining for up to %.1f s", sig, self._drain_timeout)
        self._state.begin_drain()
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        if await self._state.wait_idle(self._drain_timeout):
            logger.info("drained: no request in flight; shutting down")
        else:
            logger.warning(
                "drain timeout (%.1f s) passed with %d request(s) in flight; ending them with 503",
                self._drain_timeout,
                self._state.in_flight,
            )
            await self._state.expire_drain()
            if not await self._state.wait_idle(CLOSE_CONNECTIONS_TIMEOUT_SECONDS):
                self.force_exit = True
        self.should_exit = True


def serve(config: RuntimeConfig) -> int:
    """Run the server until drained or failed; the process exit status."""
    try:
        api_key = read_api_key(config.api_key_file)
    except ValueError as error:
        logger.error("%s", error)
        return 2
    state = ServerState(config)
    metrics = ServerMetrics(config.model_name, state.engine_stats, lambda: state.cold_start_seconds)
    context = ServingContext(
        config=config, state=state, metrics=metrics, statistics=ModelStatistics(config.model_name)
    )
    app = create_app(context, api_key)
    uvicorn_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="debug" if config.log_level == "trace" else config.log_level,
        timeout_graceful_shutdown=CLOSE_CONNECTIONS_TIMEOUT_SECONDS,
        lifespan="on",
        access_log=False,  # request_context logs each request, with its X-Request-Id, at debug
    )
    server = DrainingServer(uvicorn_config, state, config.drain_timeout)

    def request_exit() -> None:
        server.should_exit = True

    state.request_exit = request_exit
    if config.metrics_port:
        try:
            serve_metrics(config.host, config.metrics_port, metrics.registry)
        except OSError as error:
            logger.error(
                "cannot serve /metrics on %s:%d (--metrics-port): %s", config.host, config.metrics_port, error
            )
            return 1
    asyncio.run(server.serve())
    if not server.started and state.exit_code == 0:
        return 1  # could not bind the port; uvicorn logged why
    return state.exit_code
