"""N-gram speculative decoding against plain decoding, same engine settings, same run: greedy
tokens/s at batch 1 and 8 on repetitive prompts (a span repeated, as in code edits and summaries)
and on random prompts, with the drafts' acceptance rate.

    python bench/speculative.py [--hidden-size 256 --layers 4 --new-tokens 64 --k 4 --repeats 3]

Random weights at --init-range (0.02, the usual initialisation): how often the model's greedy output
repeats earlier text (so how many drafts it accepts) is a property of the weights, and the accepted
share printed beside each figure says how much there was to gain. Prints figures;
never passes or fails on time. Each figure is the best of --repeats, the two modes alternating.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from tiny_llama import write_model

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.sampling_params import SamplingParams


def repetitive_prompts(count: int, vocab_size: int, span: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        text = [rng.randrange(1, vocab_size) for _ in range(span)]
        prompts.append(text + text + text[: span // 2])
    return prompts


def random_prompts(count: int, vocab_size: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, vocab_size) for _ in range(length)] for _ in range(count)]


def timed_generation(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
    """Seconds to generate `new_tokens` greedily for every prompt at once, and tokens generated."""
    params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    for index, prompt in enumerate(prompts):
        engine.add_request(f"r{index}", prompt, params)
    generated = 0
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        generated += sum(len(output.new_token_ids) for output in engine.step())
    return time.perf_counter() - start, generated


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--k", type=int, default=4, help="--num-speculative-tokens")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--init-range", type=float, default=0.02)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        write_model(Path(workdir), args.hidden_size, args.layers, args.vocab_size, args.init_range)
        common = {"model": workdir, "dtype": "float32", "max_model_len": 512, "seed": 0}
        engines = {
            "plain": build_engine(RuntimeConfig(**common)).engine,  # type: ignore[arg-type]
            "ngram": build_engine(
                RuntimeConfig(**common, speculative_method="ngram", num_speculative_tokens=args.k)  # type: ignore[arg-type]
            ).engine,
        }
        print(
            f"model: hidden {args.hidden_size}, {args.layers} layers, vocab {args.vocab_size}, "
            f"random weights (init range {args.init_range}); "
            f"device {engines['plain'].device} ({args.threads} threads); {args.new_tokens} new tokens; "
            f"k={args.k}"
        )
        header = ("prompts", "batch", "plain tok/s", "ngram tok/s", "speedup", "accepted")
        print("{:<11} {:>5} {:>12} {:>12} {:>8} {:>9}".format(*header))
        for engine in engines.values():  # warm-up: first-call allocations are not decoding speed
            timed_generation(engine, random_prompts(2, args.vocab_size, 16, seed=0), 8)
        for kind in ("repetitive", "random"):
            for batch in (int(value) for value in args.batches.split(",")):
                if kind == "repetitive":
                    prompts = repetitive_prompts(batch, args.vocab_size, span=48, seed=batch)
                else:
                    prompts = random_prompts(batch, args.vocab_size, length=120, seed=batch)
                best = {name: 0.0 for name in engines}
                speculator = engines["ngram"].speculator
                assert speculator is not None
                drafted_before = speculator.num_draft_tokens
                accepted_before = speculator.num_accepted_tokens
                for _ in range(args.repeats):
                    for name, engine in engines.items():
                        seconds, generated = timed_generation(engine, prompts, args.new_tokens)
                        best[name] = max(best[name], generated / seconds)
                drafted = speculator.num_draft_tokens - drafted_before
                accepted = speculator.num_accepted_tokens - accepted_before
                rate = f"{accepted / drafted:.0%}" if drafted else "-"
                print(
                    f"{kind:<11} {batch:>5} {best['plain']:>12.1f} {best['ngram']:>12.1f} "
                    f"{best['ngram'] / best['plain']:>7.2f}x {rate:>9}"
                )


if __name__ == "__main__":
    main()
