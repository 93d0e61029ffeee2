"""The last-resort error shape, in-process with a fake engine: an exception no handler knows (here
the tokenizer failing) must still reach the client as the JSON error of its API with a request id,
never as the framework's plain-text "Internal Server Error" (issue #17: a truncated gzip body's
EOFError was such a 500)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fake_engine import FakeEngine

from berth_runtime.config import RuntimeConfig
from berth_runtime.server.app import create_app
from berth_runtime.server.context import ServingContext
from berth_runtime.server.lifecycle import ServerState
from berth_runtime.server.metrics import ServerMetrics
from berth_runtime.server.statistics import ModelStatistics


def broken_encode(text: str, add_special_tokens: bool = True) -> list[int]:
    raise ZeroDivisionError("a bug nobody handled")


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    engine = FakeEngine()
    config = RuntimeConfig(model=str(tmp_path / "tiny"), device="cpu")
    state = ServerState(config, engine_factory=lambda _: engine)  # type: ignore[arg-type,return-value]
    context = ServingContext(
        config, state, ServerMetrics("tiny", state.engine_stats), ModelStatistics("tiny")
    )
    await state.load()
    engine.tokenizer.encode = broken_encode  # type: ignore[method-assign]  # after the warm-up
    transport = httpx.ASGITransport(app=create_app(context, api_key=None), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_an_unhandled_exception_is_a_json_500_in_the_openai_shape(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/completions", json={"prompt": "x"}, headers={"X-Request-Id": "r-1"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "r-1"
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "ZeroDivisionError: a bug nobody handled" in error["message"]


async def test_an_unhandled_exception_is_a_json_500_in_the_triton_shape(http: httpx.AsyncClient) -> None:
    response = await http.post("/v2/models/tiny/generate", json={"text_input": "x"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert "ZeroDivisionError" in response.json()["error"]
    assert len(response.headers["x-request-id"]) == 32
