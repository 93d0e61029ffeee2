"""Held-out lifecycle defects of issue #17, live: what a drain that times out leaves its clients, and
flag values that only the model's config can refute.

Before: when --drain-timeout passed, queued requests got a plain-text 500 and running streams just
stopped (no error event, no [DONE]); `--max-model-len 100000` or `--kv-cache-blocks 1` exited 1 with
a traceback after loading the weights. Now the queued request gets a JSON 503 and the stream an
error event then `data: [DONE]`; the flags exit 2 before any weight is read, naming the flag, the
value and the accepted range."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer, free_port

from berth_runtime.config import RuntimeConfig
from berth_runtime.server.lifecycle import Phase, ServerState
from tests.smollm2_reference import smollm2_gguf_file

PROMPT = "A paged KV cache stores keys and values in fixed-size blocks."
DRAIN_TIMEOUT_SECONDS = 1
STREAMS = 6
"""One batch slot and six streams of 450 tokens (~1 s each here): whenever the drain times out, one
stream is running and the others wait."""


async def _stream(http: httpx.AsyncClient, started: asyncio.Event) -> tuple[int, list[str], str]:
    """(status, its data lines, the body of a refusal) of one streamed completion."""
    endless = {"prompt": PROMPT, "max_tokens": 450, "ignore_eos": True, "stream": True}
    async with http.stream("POST", "/v1/completions", json=endless) as response:
        if response.status_code != 200:
            return response.status_code, [], (await response.aread()).decode()
        events = []
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                started.set()
                events.append(line.removeprefix("data: "))
        return response.status_code, events, ""


async def test_drain_timeout_ends_streams_with_an_error_event_and_queued_requests_with_json_503(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    server = LiveServer(
        tiny_llama_dir, tmp_path / "server.log",
        "--max-num-seqs", "1", "--drain-timeout", str(DRAIN_TIMEOUT_SECONDS), "--log-level", "debug",
    )  # fmt: skip
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            started = asyncio.Event()
            streams = [asyncio.create_task(_stream(http, started)) for _ in range(STREAMS)]
            await started.wait()
            queued = asyncio.create_task(
                http.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
            )
            await asyncio.sleep(0.2)
            server.terminate()
            results = await asyncio.gather(*streams)
            refused = await queued
        assert refused.status_code == 503 and refused.headers["content-type"] == "application/json"
        assert refused.json()["error"]["code"] == "drain_timeout"
        assert "--drain-timeout" in refused.json()["error"]["message"]
        cut_short = 0
        for status, events, refusal in results:
            if status == 503:
                assert json.loads(refusal)["error"]["code"] == "drain_timeout"
                continue
            assert status == 200 and events[-1] == "[DONE]"
            last = json.loads(events[-2])
            if "error" in last:
                assert last["error"]["code"] == "drain_timeout"
                cut_short += 1
            else:
                assert last["choices"][0]["finish_reason"] == "length"
        assert cut_short >= 1, "a stream still running when the drain timed out ends with an error event"
        assert server.process.wait(timeout=60) == 0
        assert "ending them with 503" in server.log()
    finally:
        server.stop()


def test_the_request_id_is_in_the_request_log(tiny_llama_dir: Path, tmp_path: Path) -> None:
    server = LiveServer(tiny_llama_dir, tmp_path / "server.log", "--log-level", "debug")
    try:
        server.wait_ready()
        response = httpx.post(f"{server.url}/v1/models", headers={"X-Request-Id": "log-me-7"})
        assert response.status_code == 405 and response.headers["x-request-id"] == "log-me-7"
        deadline = time.monotonic() + 10
        while "[log-me-7]: 127.0.0.1" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"POST /v1/models" 405' in server.log()
        assert "[log-me-7]: 127.0.0.1" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--max-model-len", "100000"],
            "invalid max_model_len=100000 (--max-model-len): this model's context is 512 tokens",
        ),
        (["--max-model-len", "100000"], "accepted values are 1..512"),
        (
            ["--kv-cache-blocks", "1"],
            "invalid kv_cache_blocks=1 (--kv-cache-blocks): one sequence of max_model_len=512 tokens "
            "needs 32 blocks of 16 tokens; accepted values are >= 32",
        ),
        (["--kv-cache-blocks", "3", "--max-model-len", "64"], "accepted values are >= 4"),
    ],
)
def test_flags_the_model_config_refutes_exit_2_before_loading(
    tiny_llama_dir: Path, flags: list[str], message: str
) -> None:
    command = [
        sys.executable, "-m", "berth_runtime", "serve", "--model", str(tiny_llama_dir), "--device", "cpu",
        "--host", "127.0.0.1", "--port", str(free_port()), *flags,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "loaded" not in result.stderr


def test_a_gguf_files_context_is_checked_before_its_weights_are_read(tmp_path: Path) -> None:
    gguf_file = smollm2_gguf_file()  # SmolLM2's llama.context_length is 8192
    command = [
        sys.executable, "-m", "berth_runtime", "serve", "--model", str(gguf_file), "--device", "cpu",
        "--port", str(free_port()), "--max-model-len", "100000",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "invalid max_model_len=100000 (--max-model-len): this model's context is 8192" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_flag_only_the_loaded_model_refutes_exits_2_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def too_small_cache(_: RuntimeConfig) -> None:
        raise ValueError("the KV cache holds 3 blocks of 16 tokens, but one sequence needs 32")

    state = ServerState(RuntimeConfig(model=str(tmp_path), device="cpu"), engine_factory=too_small_cache)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        await state.load()
    assert state.phase is Phase.FAILED and state.exit_code == 2
    (record,) = caplog.records
    assert "the KV cache holds 3 blocks" in record.getMessage() and record.exc_info is None
