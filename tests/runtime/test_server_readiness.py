"""Readiness and admission in-process, with a small fake engine whose loading the test controls.

The live tests cannot hold a real server in its loading phase on purpose; here the engine factory
blocks until the test releases it, so "live but not ready until loaded and warmed up" is checked
step by step, as are a failed warm-up and the drain gate.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
from fake_engine import FakeEngine

from berth_runtime.config import RuntimeConfig
from berth_runtime.server.app import create_app
from berth_runtime.server.context import ServingContext
from berth_runtime.server.lifecycle import Phase, ServerState
from berth_runtime.server.metrics import ServerMetrics
from berth_runtime.server.statistics import ModelStatistics


def make_context(tmp_path: Path, engine: FakeEngine, release: threading.Event) -> ServingContext:
    config = RuntimeConfig(model=str(tmp_path / "tiny"), device="cpu", warmup_prompts=2)

    def factory(_: RuntimeConfig) -> FakeEngine:
        release.wait(timeout=30)
        return engine

    state = ServerState(config, engine_factory=factory)  # type: ignore[arg-type]
    return ServingContext(config, state, ServerMetrics("tiny", state.engine_stats), ModelStatistics("tiny"))


async def test_live_at_once_ready_only_after_load_and_warm_up(tmp_path: Path) -> None:
    engine, release = FakeEngine(), threading.Event()
    context = make_context(tmp_path, engine, release)
    app = create_app(context, api_key=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        loading = asyncio.create_task(context.state.load())
        await asyncio.sleep(0)
        assert (await http.get("/v2/health/live")).status_code == 200
        assert (await http.get("/v2/health/ready")).status_code == 503
        assert (await http.get("/v2/models/tiny/ready")).status_code == 503
        refused = await http.post("/v1/completions", json={"prompt": "hi"})
        assert refused.status_code == 503 and "still loading" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"]
        release.set()
        await loading
        assert context.state.phase is Phase.READY
        assert sorted(engine.request_ids) == ["warmup-0", "warmup-1"], "both warm-up generations ran"
        assert (await http.get("/v2/health/ready")).status_code == 200
        answer = await http.post("/v1/completions", json={"prompt": "hi"})
        assert answer.status_code == 200 and answer.json()["choices"][0]["text"] == "ok"


async def test_failed_warm_up_never_turns_ready_and_asks_to_exit(tmp_path: Path) -> None:
    release = threading.Event()
    release.set()
    context = make_context(tmp_path, FakeEngine(fail_generation=True), release)
    exits: list[bool] = []
    context.state.request_exit = lambda: exits.append(True)
    await context.state.load()
    assert context.state.phase is Phase.FAILED
    assert context.state.exit_code == 1 and exits == [True]


async def test_draining_refuses_new_work_but_keeps_health_and_metrics(tmp_path: Path) -> None:
    release = threading.Event()
    release.set()
    context = make_context(tmp_path, FakeEngine(), release)
    await context.state.load()
    app = create_app(context, api_key=None)
    context.state.begin_drain()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.get("/v2/health/ready")).status_code == 503
        assert (await http.get("/v2/health/live")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        for path in ("/v1/models", "/v2/models/tiny"):
            refused = await http.get(path)
            assert refused.status_code == 503
            assert refused.headers["Connection"] == "close"
        assert "draining" in (await http.get("/v2/models/tiny")).json()["error"]
    assert context.state.in_flight == 0
    assert await context.state.wait_idle(0)


@pytest.mark.parametrize("in_flight", [0, 1])
async def test_wait_idle_reports_whether_the_drain_completed(tmp_path: Path, in_flight: int) -> None:
    state = ServerState(RuntimeConfig(model=str(tmp_path), device="cpu"))
    for _ in range(in_flight):
        state.request_started()
    assert await state.wait_idle(0.01) is (in_flight == 0)


async def test_sigterm_while_loading_never_turns_ready(tmp_path: Path) -> None:
    engine, release = FakeEngine(), threading.Event()
    context = make_context(tmp_path, engine, release)
    loading = asyncio.create_task(context.state.load())
    await asyncio.sleep(0)
    context.state.begin_drain()
    release.set()
    await loading
    assert context.state.phase is Phase.DRAINING
    assert not context.state.is_ready
    assert context.state.exit_code == 0


async def test_the_loader_thread_outlives_loading(tmp_path: Path) -> None:
    """Torch CPU ops slow down many times once the thread that first ran them exits; it must stay."""
    release = threading.Event()
    release.set()
    context = make_context(tmp_path, FakeEngine(), release)
    await context.state.load()
    assert any(thread.name == "berth-model-loader" and thread.is_alive() for thread in threading.enumerate())
