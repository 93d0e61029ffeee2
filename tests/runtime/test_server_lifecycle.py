"""Live lifecycle: the bounded queue refuses with 503 + Retry-After, SIGTERM drains streams and exits 0,
and a model that cannot load ends the process with status 1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from live_server import LiveServer, free_port
from prometheus_client.parser import text_string_to_metric_families

PROMPT = "A paged KV cache stores keys and values in fixed-size blocks."


def metric(url: str, name: str, **labels: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    return sum(
        s.value
        for f in families
        for s in f.samples
        if s.name == name and all(s.labels.get(key) == value for key, value in labels.items())
    )


def waiting_requests(url: str) -> float:
    return metric(url, "vllm:num_requests_waiting")


@pytest.fixture(scope="module")
def one_slot_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One running sequence at a time and a waiting queue of one."""
    live = LiveServer(
        tiny_llama_dir,
        tmp_path_factory.mktemp("queue") / "server.log",
        "--max-num-seqs", "1", "--max-queue", "1",
    )  # fmt: skip
    try:
        live.wait_ready()
        yield live
    finally:
        assert live.stop() == 0, live.log()


async def test_full_queue_is_refused_with_503_and_retry_after(one_slot_server: LiveServer) -> None:
    url = one_slot_server.url
    long_request = {"prompt": PROMPT, "max_tokens": 450, "ignore_eos": True, "stream": True}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        async with http.stream("POST", "/v1/completions", json=long_request) as running:
            lines = running.aiter_lines()
            assert (await anext(lines)).startswith("data: "), "the first request is running"
            waiting = asyncio.create_task(
                http.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
            )
            while waiting_requests(url) < 1:
                assert not waiting.done(), "the second request was never queued"
                await asyncio.sleep(0.01)
            refused = await http.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert "queue is full" in refused.json()["error"]["message"]
            kserve = await http.post(
                f"/v2/models/{one_slot_server.model_name}/generate", json={"text_input": PROMPT}
            )
            assert kserve.status_code == 503 and "queue is full" in kserve.json()["error"]
        assert (await waiting).status_code == 200, "the queued request is served once a slot frees"


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_that_goes_away_aborts_its_request(one_slot_server: LiveServer, stream: bool) -> None:
    url = one_slot_server.url
    aborted_before = metric(url, "vllm:request_success_total", finished_reason="abort")
    completed_before = metric(url, "vllm:request_success_total", finished_reason="length")
    body = json.dumps({"prompt": PROMPT, "max_tokens": 450, "ignore_eos": True, "stream": stream}).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", one_slot_server.port)
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    while metric(url, "vllm:num_requests_running") < 1:
        assert metric(url, "vllm:request_success_total", finished_reason="length") == completed_before
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    while metric(url, "vllm:request_success_total", finished_reason="abort") == aborted_before:
        assert metric(url, "vllm:request_success_total", finished_reason="length") == completed_before, (
            "the request ran to its end although its client had gone"
        )
        await asyncio.sleep(0.01)
    while metric(url, "vllm:num_requests_running") > 0:  # the engine drops it before its next step
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        served = await http.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
    assert served.status_code == 200, "the one batch slot was freed"
    assert served.json()["usage"]["completion_tokens"] <= 2


def test_sigterm_lets_the_stream_finish_refuses_new_requests_and_exits_0(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    server = LiveServer(tiny_llama_dir, tmp_path / "server.log", "--drain-timeout", "120")
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model=server.model_name,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=450,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = [next(stream), next(stream)]
        server.terminate()  # 448 tokens still to come: the drain must wait for them
        while httpx.get(f"{server.url}/v2/health/ready").status_code == 200:
            assert server.process.poll() is None, "the server exited before turning not-ready"
        refused = httpx.post(f"{server.url}/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
        assert refused.status_code == 503
        assert "draining" in refused.json()["error"]["message"]
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        chunks += list(stream)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes == ["length"]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 450
        assert server.process.wait(timeout=120) == 0
        assert "drained: no request in flight" in server.log()
    finally:
        server.stop()


def _serve(model: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "berth_runtime", "serve", "--model", str(model), "--device", "cpu",
         "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_a_model_that_cannot_load_ends_the_process_with_status_1(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_llama_dir / name).exists():
            (broken / name).write_bytes((tiny_llama_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    result = _serve(broken)
    assert result.returncode == 1, result.stderr
    assert "loading" in result.stderr and "failed" in result.stderr


def test_an_architecture_no_family_serves_exits_2_before_loading_naming_the_supported_ones(
    tmp_path: Path,
) -> None:
    unknown = tmp_path / "gpt2-model"
    unknown.mkdir()
    (unknown / "config.json").write_text(
        json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    )
    result = _serve(unknown)
    assert result.returncode == 2, result.stderr
    assert "GPT2LMHeadModel" in result.stderr and "LlamaForCausalLM" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _unsupported_quantization(tiny_llama_dir: Path, directory: Path) -> Path:
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _unsupported_gguf(directory: Path) -> Path:
    from gguf_writer import minimal_gguf

    return minimal_gguf(directory / "gemma.gguf", {"gemma2.context_length": 64}, architecture="gemma2")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda llama, tmp: _unsupported_quantization(llama, tmp / "bnb"), ("bitsandbytes", "accepted: ")),
        (lambda llama, tmp: _unsupported_gguf(tmp), ("'gemma2' (general.architecture)", "accepted: llama")),
    ],
    ids=["quantization-format", "gguf-architecture"],
)
def test_a_model_this_runtime_does_not_serve_exits_2_before_loading_naming_what_it_accepts(
    tiny_llama_dir: Path, tmp_path: Path, make: Any, words: tuple[str, ...]
) -> None:
    # a refusal (exit 2, which the operator reports as ConfigurationRefused), not a load failure (1)
    result = _serve(make(tiny_llama_dir, tmp_path))
    assert result.returncode == 2, result.stderr
    assert all(word in result.stderr for word in words), result.stderr
    assert "Traceback" not in result.stderr and "loading" not in result.stderr
