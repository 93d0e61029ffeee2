"""The ASGI application: routes of both APIs, /metrics, error handlers, the gate, and the lifespan.

`create_app` takes everything it uses as arguments (no module globals), so tests build apps with
their own state, and one process could host more than one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from berth_runtime.server import kserve_v2, openai, triton_generate
from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import install_error_handlers
from berth_runtime.server.gate import GateMiddleware


def create_app(context: ServingContext, api_key: str | None) -> FastAPI:
    """The app; its lifespan loads the model in the background and stops the engine on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(context.state.load())
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await context.state.stop_engine()

    app = FastAPI(
        title="berth runtime",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    app.include_router(kserve_v2.build_router(context))
    app.include_router(triton_generate.build_router(context))
    app.include_router(openai.build_router(context))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(GateMiddleware, state=context.state, metrics=context.metrics, api_key=api_key)
    return app
