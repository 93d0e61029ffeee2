"""What the HTTP server adds on top of the engine: the same workload in-process and over HTTP.

One run builds (or takes) a tiny model, then measures on this machine, one after the other:
- the engine in-process (`AsyncEngine.generate`), the same-run baseline;
- a live `python -m berth_runtime serve` process, through `/v1/completions` (non-streamed) and
  streamed (server-sent events), with httpx;
for 1, 8 and 32 concurrent requests of 32 generated tokens (greedy, EOS ignored): generated
tokens/s, and the median latency of a one-token request. It prints figures; it never passes or
fails on speed. Usage:
    python bench/server_overhead.py [--model DIR] [--device cpu|cuda] [--dtype float32] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.async_engine import AsyncEngine
from berth_runtime.sampling_params import SamplingParams

PROMPT = "Continuous batching lets requests join and leave the running batch every step."
CONCURRENCY = (1, 8, 32)
LATENCY_SAMPLES = 20


def write_tiny_model(directory: Path) -> Path:
    """A random-weight Llama (hidden 256, 4 layers) with a small byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([PROMPT] * 8, trainer=trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=0, eos_token_id=1,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


async def engine_figures(config: RuntimeConfig, tokens: int) -> dict[str, float]:
    engine = AsyncEngine.from_config(config)
    await engine.start()
    prompt = engine.tokenizer.encode(PROMPT)
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    counter = iter(range(10**9))

    async def one(max_tokens: int) -> int:
        produced = 0
        request = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
        async for output in engine.generate(prompt, request, f"bench-{next(counter)}"):
            produced = output.completion_tokens
        return produced

    await one(tokens)  # warm-up
    figures: dict[str, float] = {}
    for concurrency in CONCURRENCY:
        started = time.perf_counter()
        produced = await asyncio.gather(*(one(params.max_tokens) for _ in range(concurrency)))
        figures[f"tok/s c={concurrency}"] = sum(produced) / (time.perf_counter() - started)
    latencies = []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        await one(1)
        latencies.append(time.perf_counter() - started)
    figures["1-token latency ms"] = statistics.median(latencies) * 1000
    await engine.stop()
    return figures


async def http_figures(url: str, model: str, tokens: int, stream: bool) -> dict[str, float]:
    body = {"model": model, "prompt": PROMPT, "temperature": 0, "ignore_eos": True}
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64)) as http:

        async def one(max_tokens: int) -> int:
            request = {**body, "max_tokens": max_tokens}
            if not stream:
                response = await http.post("/v1/completions", json=request)
                return int(response.json()["usage"]["completion_tokens"])
            request |= {"stream": True, "stream_options": {"include_usage": True}}
            produced = 0
            async with http.stream("POST", "/v1/completions", json=request) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"usage"' in line and '"choices":[]' in line:
                        produced = json.loads(line[6:])["usage"]["completion_tokens"]
            return produced

        await one(tokens)
        figures: dict[str, float] = {}
        for concurrency in CONCURRENCY:
            started = time.perf_counter()
            produced = await asyncio.gather(*(one(tokens) for _ in range(concurrency)))
            figures[f"tok/s c={concurrency}"] = sum(produced) / (time.perf_counter() - started)
        latencies = []
        for _ in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            await one(1)
            latencies.append(time.perf_counter() - started)
        figures["1-token latency ms"] = statistics.median(latencies) * 1000
    return figures


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(arguments: argparse.Namespace, model_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "berth_runtime", "serve", "--model", str(model_dir),
        "--device", arguments.device, "--dtype", arguments.dtype, "--host", "127.0.0.1",
        "--port", str(port), "--kv-cache-blocks", "1024", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not become ready within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model directory (default: a tiny random Llama)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--tokens", type=int, default=32)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = arguments.model or write_tiny_model(Path(scratch) / "tiny-llama")
        config = RuntimeConfig(
            model=str(model_dir), device=arguments.device, dtype=arguments.dtype, kv_cache_blocks=1024
        )
        results = {"engine in-process (baseline)": asyncio.run(engine_figures(config, arguments.tokens))}
        process, url = start_server(arguments, model_dir)
        try:
            model = config.model_name
            results["HTTP /v1/completions"] = asyncio.run(
                http_figures(url, model, arguments.tokens, stream=False)
            )
            results["HTTP /v1/completions stream"] = asyncio.run(
                http_figures(url, model, arguments.tokens, stream=True)
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    columns = list(next(iter(results.values())))
    print(
        f"device={arguments.device} dtype={arguments.dtype} tokens/request={arguments.tokens} "
        f"cpus={os.cpu_count()} load average={os.getloadavg()[0]:.1f}"
    )
    print(f"{'path':32}" + "".join(f"{column:>20}" for column in columns))
    for name, figures in results.items():
        print(f"{name:32}" + "".join(f"{figures[column]:>20.1f}" for column in columns))


if __name__ == "__main__":
    main()
