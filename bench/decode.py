"""Decode throughput of berth's engine against the HBM-bandwidth limit, beside transformers generate().

One run prints, on the machine it runs on: the GPU's name, its measured device copy bandwidth and
dense bf16 matmul rate; then for the Llama-3.2-1B-like and Llama-3.1-8B-like shapes (random
weights, bf16 and int8 weight-only), for berth's engine with its torch reference layers, with its
layer functions on the Triton kernels (``kernels.layer_ops``) run eagerly, and as it runs on CUDA
(``graphs``: the kernel layer ops with decode replayed from CUDA graphs per batch bucket):
tokens/s at batch 1, 8 and 64 for prompt 128 / 128 new tokens
(greedy, EOS ignored), the decode step's share of the bandwidth limit (weights + KV bytes a step
must read, over the measured copy bandwidth), and transformers' generate() on the same shape in the
same run; and time to first token for a 2,048-token prompt against the compute limit
(2 * params * tokens + attention FLOPs, over the measured matmul rate).

It never passes or fails on speed; it needs CUDA and says so otherwise. Usage:
    python bench/decode.py [--shapes 1b,8b] [--batches 1,8,64] [--weights bf16,int8]
        [--layers reference,kernels,graphs] [--skip-hf] [--skip-ttft] [--json PATH]

With ``--tensor-parallel-size N`` it instead builds the engine as ``serve`` does at TP=N and at TP=1
in the same run (``decode_tp``: tokens/s at the same batches, share of the aggregate bandwidth); that
mode also runs on the CPU under gloo (``--shapes tiny``), as a smoke test. Its exit status is 1 when
a variant failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

# bench/ is this script's directory, hence on sys.path
from decode_models import (
    SHAPES,
    build_berth_model,
    device_copy_bandwidth,
    kv_bytes_per_token,
    matmul_flops,
    model_config_dict,
    model_layers,
    random_prompts,
    run_engine,
    streamed_weight_bytes,
)
from decode_tp import add_tensor_parallel_arguments, run_tensor_parallel

from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.decode_graphs import DecodeGraphs
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.model_runner import ModelRunner, allocate_kv_caches
from berth_runtime.engine.scheduler import Scheduler
from berth_runtime.models.llama import LlamaForCausalLM

PROMPT_LEN = 128
NEW_TOKENS = 128
TTFT_PROMPT_LEN = 2048
BLOCK_SIZE = 16


@dataclass
class Result:
    shape: str
    weights: str
    engine: str
    batch: int
    tokens_per_s: float
    decode_step_ms: float | None = None
    bandwidth_share: float | None = None


class CountedDecodeGraphs(DecodeGraphs):
    """The engine's decode graphs, counting replays: a figure labelled ``graphs`` must come from
    steps that really replayed a graph, not from the eager fallback."""

    replays = 0

    def run(self, bucket: int, per_token: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        self.replays += 1
        return super().run(bucket, per_token, tables)


def make_engine(
    model: LlamaForCausalLM, device: torch.device, max_batch: int, max_tokens: int, graphs: bool = False
) -> LLMEngine:
    """An engine as ``engine.builder`` wires it (minus tokenizer); ``graphs`` captures decode at every
    batch bucket up to ``max_batch``, as the builder does on CUDA."""
    max_model_len = max_tokens + 16
    blocks_per_seq = -(-max_tokens // BLOCK_SIZE) + 1
    num_blocks = max_batch * blocks_per_seq + 8
    kv_caches = allocate_kv_caches(model, num_blocks, BLOCK_SIZE, torch.bfloat16, device)
    block_manager = BlockManager(num_blocks, BLOCK_SIZE, enable_prefix_caching=False)
    scheduler = Scheduler(block_manager, max_num_seqs=max(64, max_batch), max_num_batched_tokens=8192)
    runner = ModelRunner(model, kv_caches, BLOCK_SIZE, device)
    if graphs:
        runner.decode_graphs = CountedDecodeGraphs(
            model, kv_caches, BLOCK_SIZE, max_model_len, max_batch, device, capture=True
        )
        runner.decode_graphs.capture_all()
    return LLMEngine(runner, scheduler, None, (), max_model_len, seed=0)


def bench_berth(
    model: LlamaForCausalLM, shape: str, weights: str, layers: str, batches: list[int], bandwidth: float
) -> list[Result]:
    config = model_config_dict(shape)
    device = next(model.parameters()).device
    weight_bytes = streamed_weight_bytes(model)
    results = []
    for batch in batches:
        engine = make_engine(model, device, batch, PROMPT_LEN + NEW_TOKENS, graphs=layers == "graphs")
        run_engine(engine, random_prompts(batch, PROMPT_LEN, config["vocab_size"], seed=1), 4)  # warm-up
        graphs = engine.runner.decode_graphs
        if isinstance(graphs, CountedDecodeGraphs):
            graphs.replays = 0
        total, _, step = run_engine(
            engine, random_prompts(batch, PROMPT_LEN, config["vocab_size"], 2), NEW_TOKENS
        )
        if isinstance(graphs, CountedDecodeGraphs) and graphs.replays < NEW_TOKENS - 1:
            raise RuntimeError(
                f"{graphs.replays} of {NEW_TOKENS - 1} decode steps replayed a CUDA graph at batch {batch}"
            )
        average_context = PROMPT_LEN + NEW_TOKENS / 2
        step_bytes = weight_bytes + batch * average_context * kv_bytes_per_token(config)
        results.append(
            Result(
                shape=shape,
                weights=weights,
                engine=f"berth-{layers}",
                batch=batch,
                tokens_per_s=batch * NEW_TOKENS / total,
                decode_step_ms=step * 1e3,
                bandwidth_share=step_bytes / step / bandwidth,
            )
        )
        print_result(results[-1], weight_bytes, bandwidth)
        del engine
        gc.collect()
        torch.cuda.empty_cache()
    return results


def time_to_first_token(
    model: LlamaForCausalLM, shape: str, kind: str, device: torch.device, flops: float
) -> dict[str, float]:
    config = model_config_dict(shape)
    engine = make_engine(model, device, 1, TTFT_PROMPT_LEN + 8, graphs=kind == "graphs")
    run_engine(engine, random_prompts(1, TTFT_PROMPT_LEN, config["vocab_size"], seed=3), 1)  # warm-up
    best = min(
        run_engine(engine, random_prompts(1, TTFT_PROMPT_LEN, config["vocab_size"], seed=4 + i), 1)[1]
        for i in range(3)
    )
    # prefill multiplies every layer weight by every prompt token; the head sees only the last one
    layer_params = sum(p.numel() for p in model.layers.parameters())
    head_params = config["vocab_size"] * config["hidden_size"]
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    attention_flops = (
        4 * config["num_hidden_layers"] * config["num_attention_heads"] * head_dim * TTFT_PROMPT_LEN**2 / 2
    )
    total_flops = 2 * layer_params * TTFT_PROMPT_LEN + 2 * head_params + attention_flops
    limit = total_flops / flops
    return {"ttft_ms": best * 1e3, "compute_limit_ms": limit * 1e3, "ratio_to_limit": best / limit}


def bench_transformers(shape: str, batches: list[int], device: torch.device) -> list[Result]:
    from transformers import LlamaConfig
    from transformers import LlamaForCausalLM as HFLlama

    excluded = ("architectures", "torch_dtype")
    settings = {k: v for k, v in model_config_dict(shape).items() if k not in excluded}
    with torch.device(device):  # transformers' own random init, on the GPU
        model = HFLlama._from_config(LlamaConfig(**settings), dtype=torch.bfloat16)
    model.eval()
    results = []
    for batch in batches:
        prompts = torch.tensor(
            random_prompts(batch, PROMPT_LEN, settings["vocab_size"], seed=2), device=device
        )
        generate = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
        model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=4, do_sample=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(prompts, attention_mask=torch.ones_like(prompts), **generate)
        torch.cuda.synchronize()
        results.append(
            Result(shape, "bf16", "transformers", batch, batch * NEW_TOKENS / (time.perf_counter() - start))
        )
        print_result(results[-1], None, None)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return results


def print_result(result: Result, weight_bytes: int | None, bandwidth: float | None) -> None:
    line = f"{result.shape:>3} {result.weights:>4} {result.engine:>12} b{result.batch:<3}"
    line += f" {result.tokens_per_s:10.1f} tok/s"
    if result.decode_step_ms is not None and weight_bytes is not None and bandwidth is not None:
        limit = bandwidth / weight_bytes * result.batch
        line += (
            f"  step {result.decode_step_ms:7.2f} ms"
            f"  {100 * (result.bandwidth_share or 0):5.1f}% of the bandwidth limit"
            f"  (weights {weight_bytes / 1e9:.2f} GB; weight-only limit {limit:,.0f} tok/s)"
        )
    print(line, flush=True)


def measure_berth(
    model: LlamaForCausalLM,
    shape: str,
    weight: str,
    kind: str,
    batches: list[int],
    bandwidth: float,
    flops: float,
    args: argparse.Namespace,
    report: dict[str, Any],
) -> None:
    """Decode figures for one (weights, layers) variant, and TTFT for bf16; appended to ``report``."""
    device = next(model.parameters()).device
    with model_layers(model, kind):
        report["results"] += [asdict(r) for r in bench_berth(model, shape, weight, kind, batches, bandwidth)]
        save_report(args.json, report)
        if weight == "bf16" and not args.skip_ttft:
            ttft = time_to_first_token(model, shape, kind, device, flops)
            report["ttft"][f"{shape} {kind}"] = ttft
            print(
                f"{shape:>3} bf16 berth-{kind} TTFT {TTFT_PROMPT_LEN} tokens: "
                f"{ttft['ttft_ms']:.1f} ms; compute limit {ttft['compute_limit_ms']:.1f} ms "
                f"({ttft['ratio_to_limit']:.2f}x the limit)",
                flush=True,
            )
            save_report(args.json, report)


def save_report(path: Path | None, report: dict[str, Any]) -> None:
    """Rewritten after every block of figures, so a run cut short by a time limit keeps what it measured."""
    if path is not None:
        path.write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="1b,8b", help="comma-separated subset of: " + ",".join(SHAPES))
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--weights", default="bf16,int8", help="comma-separated subset of: bf16,int8")
    parser.add_argument(
        "--layers",
        default="reference,kernels,graphs",
        help="berth's layer functions: reference (torch), kernels (kernels.layer_ops, eager), graphs "
        "(kernels.layer_ops with decode replayed from CUDA graphs: the engine as it runs on CUDA)",
    )
    parser.add_argument("--skip-hf", action="store_true", help="skip the transformers generate() baseline")
    parser.add_argument("--skip-ttft", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    add_tensor_parallel_arguments(parser)
    args = parser.parse_args(argv)
    if args.tensor_parallel_size is None and not torch.cuda.is_available():
        print("bench/decode.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured.")
        return 2
    shapes = [s for s in args.shapes.split(",") if s]
    weights = [w for w in args.weights.split(",") if w]
    batches = [int(b) for b in args.batches.split(",") if b]
    layer_kinds = [kind for kind in args.layers.split(",") if kind]
    bad = [s for s in shapes if s not in SHAPES] + [w for w in weights if w not in ("bf16", "int8")]
    bad += [kind for kind in layer_kinds if kind not in ("reference", "kernels", "graphs")]
    if bad or any(b < 1 for b in batches):
        parser.error(
            f"unknown values {bad} or a batch < 1; accepted: shapes {','.join(SHAPES)}, weights bf16,int8, "
            "layers reference,kernels,graphs"
        )
    if args.tensor_parallel_size is not None:
        return run_tensor_parallel(args, shapes, weights, batches)

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    bandwidth = device_copy_bandwidth(device)
    flops = matmul_flops(device)
    print(
        f"GPU: {name}; torch {torch.__version__}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"device copy bandwidth {bandwidth / 1e12:.2f} TB/s; dense bf16 matmul {flops / 1e12:.0f} TFLOP/s")
    report: dict[str, Any] = {
        "gpu": name,
        "torch": torch.__version__,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "matmul_flops": flops,
        "results": [],
        "ttft": {},
        "errors": [],
    }
    with tempfile.TemporaryDirectory() as workdir:
        for shape in shapes:
            for weight in weights:
                model = build_berth_model(shape, weight, device, Path(workdir))
                for kind in layer_kinds:
                    try:
                        measure_berth(model, shape, weight, kind, batches, bandwidth, flops, args, report)
                    except Exception as error:  # one failing variant must not cost the rest of the run
                        print(
                            f"{shape} {weight} berth-{kind} FAILED: {type(error).__name__}: {error}",
                            flush=True,
                        )
                        report["errors"].append(f"{shape} {weight} {kind}: {type(error).__name__}: {error}")
                        save_report(args.json, report)
                del model
                gc.collect()
                torch.cuda.empty_cache()
            if not args.skip_hf:
                report["results"] += [asdict(r) for r in bench_transformers(shape, batches, device)]
                save_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
