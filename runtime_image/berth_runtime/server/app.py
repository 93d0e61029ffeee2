"""The ASGI application: routes of both APIs, /metrics, error handlers, the middlewares, the lifespan.

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

from berth_runtime.server import kserve_v2, openai, triton_generate, utility_routes
from berth_runtime.server.context import ServingContext
from berth_runtime.server.errors import install_error_handlers
from berth_runtime.server.gate import GateMiddleware
from berth_runtime.server.request_body import BodyMiddleware
from berth_runtime.server.request_context import RequestContextMiddleware


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
    app.include_router(utility_routes.build_router(context))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Outermost last: request id and last-resort error, then the gate (key, drain), then the body.
    app.add_middleware(BodyMiddleware)
    app.add_middleware(GateMiddleware, state=context.state, metrics=context.metrics, api_key=api_key)
    app.add_middleware(RequestContextMiddleware)
    return app
