"""Engine decode throughput against `transformers.generate()` on the same tiny random model, in the
same run, at several batch sizes; plus the engine's own overhead per step (everything that is not
the model's forward: scheduling, input building, sampling, detokenization, stop checks).

    python bench/engine_throughput.py [--hidden-size 256 --layers 4 --batches 1,8,32 --new-tokens 64]

Prints figures; never passes or fails on time. CPU figures depend on the machine and its load: each
figure is the best of --repeats runs, engine and baseline alternating in the same process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tiny_llama import write_model
from transformers import LlamaForCausalLM

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.sampling_params import SamplingParams


class TimedModel:
    """Wraps the engine's model to time its forward and logits (synchronised on CUDA)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = model.config
        self.seconds = 0.0

    def _timed(self, function: Any, *args: Any) -> Any:
        start = time.perf_counter()
        result = function(*args)
        if result.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return result

    def __call__(self, *args: Any) -> Any:
        return self._timed(self.model, *args)

    def compute_logits(self, hidden: torch.Tensor) -> Any:
        return self._timed(self.model.compute_logits, hidden)


def prompts(batch: int, prompt_len: int, vocab_size: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(batch)
    return torch.randint(1, vocab_size, (batch, prompt_len), generator=generator).tolist()


def bench_transformers(
    model: LlamaForCausalLM, batch: list[list[int]], lengths: list[int], device: str
) -> float:
    """Useful tokens/s of one generate() call: it runs the batch until its longest request is done,
    so a request wanting fewer tokens occupies its row anyway (static batching)."""
    input_ids = torch.tensor(batch, device=device)
    kwargs: dict[str, Any] = {"max_new_tokens": max(lengths), "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        model.generate(input_ids[:, :8], **{**kwargs, "max_new_tokens": 2})  # warm-up
        start = time.perf_counter()
        model.generate(input_ids, **kwargs)
    return sum(lengths) / (time.perf_counter() - start)


def bench_engine(
    engine: LLMEngine, batch: list[list[int]], lengths: list[int]
) -> tuple[float, float, float, int]:
    """(tokens/s, ms per step, engine overhead ms per step, steps); each request stops at its length."""
    timed = TimedModel(engine.runner.model)
    engine.runner.model = timed  # type: ignore[assignment]
    for index, prompt in enumerate(batch):
        engine.add_request(f"warm{index}", prompt[:8], SamplingParams(max_tokens=2, ignore_eos=True))
    while engine.has_unfinished_requests():
        engine.step()
    timed.seconds = 0.0
    for index, (prompt, length) in enumerate(zip(batch, lengths, strict=True)):
        engine.add_request(
            f"r{index}", prompt, SamplingParams(max_tokens=length, temperature=0.0, ignore_eos=True)
        )
    generated = steps = 0
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        generated += sum(len(output.new_token_ids) for output in engine.step())
        steps += 1
    elapsed = time.perf_counter() - start
    engine.runner.model = timed.model
    return generated / elapsed, 1000 * elapsed / steps, 1000 * (elapsed - timed.seconds) / steps, steps


def report(
    title: str, engine: LLMEngine, reference: LlamaForCausalLM, args: argparse.Namespace, mixed: bool
) -> None:
    print(f"\n{title}")
    print(
        f"{'batch':>5} {'transformers tok/s':>19} {'engine tok/s':>13} {'speed-up':>9} "
        f"{'ms/step':>8} {'overhead ms/step':>17}"
    )
    for size in [int(size) for size in args.batches.split(",")]:
        batch = prompts(size, args.prompt_len, args.vocab_size)
        lengths = [args.new_tokens] * size
        if mixed:  # evenly spread from 1/8 of new_tokens up to new_tokens
            low = max(args.new_tokens // 8, 1)
            lengths = [low + (args.new_tokens - low) * index // max(size - 1, 1) for index in range(size)]
        baselines, runs = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            baselines.append(bench_transformers(reference, batch, lengths, args.device))
            runs.append(bench_engine(engine, batch, lengths))
        baseline = max(baselines)
        tokens_per_second, step_ms, overhead_ms, _ = max(runs)
        speed_up = tokens_per_second / baseline
        print(
            f"{size:>5} {baseline:>19.1f} {tokens_per_second:>13.1f} {speed_up:>8.2f}x "
            f"{step_ms:>8.2f} {overhead_ms:>17.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure; the best is printed")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(size) for size in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        write_model(model_dir, args.hidden_size, args.layers, args.vocab_size)
        config = RuntimeConfig(
            model=str(model_dir),
            dtype="float32",
            device=args.device,
            max_num_seqs=max(batches),
            max_model_len=1024,
        )
        engine = build_engine(config).engine
        reference = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(args.device).eval()
        print(
            f"tiny Llama: hidden {args.hidden_size}, {args.layers} layers, vocab {args.vocab_size}, fp32, "
            f"{args.device} ({torch.get_num_threads()} threads); prompt {args.prompt_len}, "
            f"{args.new_tokens} new tokens"
        )
        report(f"every request wants {args.new_tokens} tokens", engine, reference, args, mixed=False)
        report(
            f"requests want {max(args.new_tokens // 8, 1)}..{args.new_tokens} tokens (useful tokens/s)",
            engine,
            reference,
            args,
            mixed=True,
        )


if __name__ == "__main__":
    main()
