"""`berth:cold_start_seconds`: the fetch step records its duration beside the model it filled, and
the server exports it with its own load and warm-up times once it has them, through /metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
from fake_engine import FakeEngine
from prometheus_client.parser import text_string_to_metric_families

from berth_runtime.cli import main
from berth_runtime.cold_start import fetch_record_path, record_fetch_seconds, recorded_fetch_seconds
from berth_runtime.config import RuntimeConfig
from berth_runtime.server.app import create_app
from berth_runtime.server.context import ServingContext
from berth_runtime.server.lifecycle import ServerState
from berth_runtime.server.metrics import ServerMetrics
from berth_runtime.server.statistics import ModelStatistics

LOAD_SECONDS = 0.3


def cold_start_stages(text: str) -> dict[str, float]:
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "berth:cold_start_seconds"
        for sample in family.samples
    }


def test_the_fetch_step_records_its_duration_beside_the_model(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "model"
    assert main(["fetch", f"file://{tiny_qwen2_dir}", str(destination)]) == 0
    recorded = recorded_fetch_seconds(destination)
    assert recorded is not None and 0 <= recorded < 60
    assert fetch_record_path(destination).parent == tmp_path  # beside the model, not inside it


def test_no_record_or_a_damaged_one_gives_no_download_figure(tmp_path: Path) -> None:
    assert recorded_fetch_seconds(tmp_path / "model") is None
    fetch_record_path(tmp_path / "model").write_text("{not json", encoding="utf-8")
    assert recorded_fetch_seconds(tmp_path / "model") is None
    record_fetch_seconds(tmp_path / "model", 12.5)
    assert recorded_fetch_seconds(tmp_path / "model") == 12.5


async def test_metrics_show_each_stage_once_it_is_done(tmp_path: Path) -> None:
    model = tmp_path / "model"
    record_fetch_seconds(model, 42.0)
    release = threading.Event()

    def slow_load(_: RuntimeConfig) -> FakeEngine:
        release.wait(timeout=30)
        time.sleep(LOAD_SECONDS)
        return FakeEngine()

    config = RuntimeConfig(model=str(model), device="cpu", warmup_prompts=1)
    state = ServerState(config, engine_factory=slow_load)  # type: ignore[arg-type]
    metrics = ServerMetrics("tiny", state.engine_stats, lambda: state.cold_start_seconds)
    app = create_app(ServingContext(config, state, metrics, ModelStatistics("tiny")), api_key=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        loading = asyncio.create_task(state.load())
        await asyncio.sleep(0.05)
        while_loading = cold_start_stages((await http.get("/metrics")).text)
        release.set()
        await loading
        ready = cold_start_stages((await http.get("/metrics")).text)

    assert while_loading == {"download": 42.0}
    assert set(ready) == {"download", "load", "warmup"}
    assert ready["download"] == 42.0
    assert LOAD_SECONDS <= ready["load"] < 30
    assert 0 <= ready["warmup"] < 30
