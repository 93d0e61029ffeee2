"""The sampler's per-step cost with and without the request-dependent processors (presence,
frequency and repetition penalties, min_p, logit_bias), same run, on the CPU.

For batch 1, 16 and 64 at a Llama-2-sized vocabulary (32000), each sequence with a --prompt-len
prompt and --output-len tokens already generated, it times `Sampler.__call__` over --steps decode
steps (each sampled token appended to its sequence, as the engine does, so the penalties' counts
are updated incrementally), in four settings: greedy, greedy + penalties, sampled (temperature 0.8,
top-p 0.95), and sampled + penalties + min_p + a 16-entry logit_bias. Logits are made before the
clock starts. Each figure is the median over --runs of the mean per-step time, the settings
interleaved within each run. Prints figures; never passes or fails on time.

    python bench/sampling_penalties.py [--vocab 32000 --batches 1,16,64 --runs 7 --threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from berth_runtime.engine.sampler import Sampler
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import SamplingParams

PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.2}
SETTINGS: dict[str, dict[str, object]] = {
    "greedy": {"temperature": 0.0},
    "greedy+penalties": {"temperature": 0.0, **PENALTIES},
    "sampled": {"temperature": 0.8, "top_p": 0.95},
    "sampled+all": {
        "temperature": 0.8,
        "top_p": 0.95,
        "min_p": 0.05,
        "logit_bias": {str(token): -5.0 for token in range(100, 116)},
        **PENALTIES,
    },
}


def make_batch(batch: int, params: SamplingParams, args: argparse.Namespace, seed: int) -> list[Sequence]:
    rng = random.Random(seed)
    seqs = []
    for index in range(batch):
        prompt = [rng.randrange(args.vocab) for _ in range(args.prompt_len)]
        seq = Sequence(request_id=f"r{index}", prompt_token_ids=prompt, params=params, arrival=index)
        seq.token_ids += [rng.randrange(args.vocab) for _ in range(args.output_len)]
        seqs.append(seq)
    return seqs


def step_ms(batch: int, settings: dict[str, object], args: argparse.Namespace, seed: int) -> float:
    """Mean milliseconds per sampler call over args.steps steps of one fresh batch."""
    params = SamplingParams(max_tokens=1_000_000, **settings)  # type: ignore[arg-type]
    seqs = make_batch(batch, params, args, seed)
    sampler = Sampler((2,), torch.Generator().manual_seed(seed))
    logits = [torch.randn(batch, args.vocab) * 3 for _ in range(args.steps + 1)]
    sampler(logits[-1], seqs)  # the first call makes the penalties' counts: not a decode step's cost
    started = time.perf_counter()
    for step in range(args.steps):
        token_ids, _ = sampler(logits[step], seqs)
        for seq, token_id in zip(seqs, token_ids, strict=True):
            seq.token_ids.append(token_id)
    return (time.perf_counter() - started) * 1000 / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--output-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest figures)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"sampler step on CPU ({args.threads} thread(s)), vocab {args.vocab}, context {args.prompt_len} "
        f"prompt + {args.output_len} output, median of {args.runs} runs x {args.steps} steps (ms/step)"
    )
    print(
        f"{'batch':>5} " + " ".join(f"{name:>17}" for name in SETTINGS) + "   penalty cost (greedy, sampled)"
    )
    for batch in (int(value) for value in args.batches.split(",")):
        times: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for run in range(args.runs):
            for name, settings in SETTINGS.items():
                times[name].append(step_ms(batch, settings, args, seed=run))
        medians = {name: statistics.median(values) for name, values in times.items()}
        greedy_extra = medians["greedy+penalties"] - medians["greedy"]
        sampled_extra = medians["sampled+all"] - medians["sampled"]
        print(
            f"{batch:>5} "
            + " ".join(f"{medians[name]:>17.3f}" for name in SETTINGS)
            + f"   +{greedy_extra:.3f} ms (x{medians['greedy+penalties'] / medians['greedy']:.1f}),"
            f" +{sampled_extra:.3f} ms (x{medians['sampled+all'] / medians['sampled']:.2f})"
        )


if __name__ == "__main__":
    main()
