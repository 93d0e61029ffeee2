"""The live server at --tensor-parallel-size 2 (gloo on the CPU): the API behaves as on one device,
drain and readiness are unchanged, and the processes end together whichever side dies.

The OpenAI, KServe v2 and /metrics tests below are the shared live-server tests themselves
(test_server_live_*), collected again here against this module's `server`: a TP=2 process with the
same flags as the single-device one. The greedy text equals an in-process single-device engine's on
the same prompt ids; the drain test runs last, on the same server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from engine_reference import engine_config, greedy, run_to_completion
from live_api import API_KEY, auth
from live_server import LiveServer, free_port
from test_server_live_kserve import (
    test_triton_generate_and_generate_stream,
    test_tritonclient_health_and_metadata,
    test_tritonclient_infer_text_binary_and_json_agree_with_openai,
)
from test_server_live_metrics import (
    test_metric_values_move_as_requests_complete,
    test_metrics_exist_with_the_model_label_on_both_ports,
)
from test_server_live_openai import (
    test_logprobs_have_one_entry_per_generated_token,
    test_openai_models_and_completion,
    test_openai_streamed_chat_matches_the_unstreamed_answer,
    test_sse_stream_ends_with_done,
)

from berth_runtime.engine.builder import build_engine

pytest_plugins = ["live_api_fixtures"]

SHARED_LIVE_TESTS = (
    test_openai_models_and_completion,
    test_openai_streamed_chat_matches_the_unstreamed_answer,
    test_sse_stream_ends_with_done,
    test_logprobs_have_one_entry_per_generated_token,
    test_tritonclient_health_and_metadata,
    test_tritonclient_infer_text_binary_and_json_agree_with_openai,
    test_triton_generate_and_generate_stream,
    test_metrics_exist_with_the_model_label_on_both_ports,
    test_metric_values_move_as_requests_complete,
)
"""Collected by pytest from this module's namespace, against the TP=2 `server` below."""

#: How long a server may take to exit after one of its processes is killed.
EXIT_LIMIT_SECONDS = 30.0
PROMPT_IDS = [0, 17, 94, 203, 5, 66, 311, 42, 8, 150, 77, 230, 19]
WORKER = re.compile(r"started tensor-parallel worker rank (\d+) of \d+ \(pid (\d+)\)")


def _worker_pids(server: LiveServer) -> dict[int, int]:
    return {int(rank): int(pid) for rank, pid in WORKER.findall(server.log())}


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, limit: float) -> float:
    """Seconds until `pid` is gone; fails after `limit`."""
    started = time.monotonic()
    while _alive(pid):
        assert time.monotonic() - started < limit, f"pid {pid} still running after {limit} s"
        time.sleep(0.1)
    return time.monotonic() - started


def _start(model_dir: Path, log: Path, *extra: str) -> LiveServer:
    server = LiveServer(model_dir, log, "--tensor-parallel-size", "2", *extra)
    server.wait_ready()
    assert set(_worker_pids(server)) == {1}, server.log()
    return server


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The shared live server's flags (live_api_fixtures.server), split over two ranks."""
    directory = tmp_path_factory.mktemp("live-tp2")
    (directory / "api-key").write_text(API_KEY + "\n")
    metrics_port = free_port()
    live = _start(
        tiny_llama_dir, directory / "server.log",
        "--api-key-file", str(directory / "api-key"), "--enable-prefix-caching",
        "--metrics-port", str(metrics_port), "--served-model-name", "tiny",
    )  # fmt: skip
    live.model_name = "tiny"
    live.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        yield live
    finally:
        live.stop()


def test_greedy_text_at_tp2_equals_one_device(server: LiveServer, tiny_llama_dir: Path) -> None:
    built = build_engine(engine_config(tiny_llama_dir, block_size=16))
    built.engine.add_request("expected", PROMPT_IDS, greedy(12))
    expected = "".join(output.new_text for output in run_to_completion(built.engine)["expected"])
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    completion = client.completions.create(
        model="tiny", prompt=PROMPT_IDS, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    assert completion.choices[0].text == expected


def test_a_signal_to_rank_0s_process_group_does_not_reach_its_worker(server: LiveServer) -> None:
    # Ctrl-C, `timeout` or an init forwarding SIGTERM to the group must start rank 0's drain (which
    # still needs the worker), not kill the worker under it: the worker leads a group of its own.
    worker = _worker_pids(server)[1]
    assert os.getpgid(worker) == worker != os.getpgid(server.process.pid)


async def test_drain_at_tp2_finishes_the_stream_then_exits_0_with_its_worker(server: LiveServer) -> None:
    """Runs last: it ends the module's server."""
    worker = _worker_pids(server)[1]
    body = {"model": "tiny", "prompt": "drain", "max_tokens": 60, "ignore_eos": True, "stream": True}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=60, headers=auth()) as http,
        http.stream("POST", "/v1/completions", json=body) as response,
    ):
        lines = response.aiter_lines()
        first = await anext(lines)
        server.terminate()
        await asyncio.sleep(0.3)
        ready = await http.get("/v2/health/ready")
        events = [first] + [line async for line in lines]
    assert ready.status_code == 503
    data = [line.removeprefix("data: ") for line in events if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["choices"][0]["finish_reason"] == "length"
    assert server.process.wait(timeout=EXIT_LIMIT_SECONDS) == 0, server.log()
    _wait_gone(worker, EXIT_LIMIT_SECONDS)
    # the engine's stop let the worker leave its loop (a clean exit, not the exit hook's SIGTERM)
    assert "tensor-parallel workers stopped, exit codes [0]" in server.log(), server.log()


def test_a_killed_worker_ends_the_server_naming_its_rank(tiny_llama_dir: Path, tmp_path: Path) -> None:
    server = _start(tiny_llama_dir, tmp_path / "server.log")
    try:
        worker = _worker_pids(server)[1]
        os.kill(worker, signal.SIGKILL)
        started = time.monotonic()
        code = server.process.wait(timeout=EXIT_LIMIT_SECONDS)
        print(f"server exited {time.monotonic() - started:.2f} s after its worker was killed")
        assert code == 1
        assert f"tensor-parallel worker rank 1 (pid {worker}) exited with signal SIGKILL" in server.log()
    finally:
        server.stop()


def test_a_worker_exits_when_rank_0_is_killed(tiny_llama_dir: Path, tmp_path: Path) -> None:
    server = _start(tiny_llama_dir, tmp_path / "server.log")
    try:
        worker = _worker_pids(server)[1]
        server.process.kill()
        server.process.wait(timeout=EXIT_LIMIT_SECONDS)
        print(f"the worker exited {_wait_gone(worker, EXIT_LIMIT_SECONDS):.2f} s after rank 0 was killed")
    finally:
        server.stop()
