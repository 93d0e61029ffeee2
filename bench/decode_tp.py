"""Decode throughput with tensor parallelism, beside one device in the same run (bench/decode.py
--tensor-parallel-size N).

The engine is built exactly as ``serve`` builds it (``engine.builder.build_engine``: the parallel
launcher spawns ranks 1..N-1, each loads only its slices of the checkpoint; kernel layer ops and
decode CUDA graphs on CUDA, gloo and the reference layers on the CPU), so the figure is what a
TP=N pod would do, not a model-only floor. That needs a checkpoint on disk the workers can open:
the shape's random weights are written as safetensors (one file per layer) with a small word-level
tokenizer, once per shape.

For each batch it prints tokens/s and the decode step's share of the **aggregate** bandwidth: each
rank streams its weight slices plus its KV heads' cache per step, so the share is
N x (bytes one rank streams) / step time over N x the copy bandwidth measured in this run (on GPU
0; the ranks' cards are assumed alike), i.e. the per-rank share. The TP=1 engine, built by the same
code, runs first as the same-run baseline, and the configuration (device, N, max_model_len,
context) heads the output. It never passes or fails on speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from decode_models import (
    SHAPES,
    device_copy_bandwidth,
    model_config_dict,
    random_prompts,
    run_engine,
    streamed_weight_bytes,
)
from safetensors.torch import save_file

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.model_runner import kv_cache_bytes_per_block

BLOCK_SIZE = 16
#: What ``build_engine`` runs on each device, for the configuration line.
ENGINE_PATH = {
    "cuda": "kernel layer ops, decode CUDA graphs, NCCL between ranks",
    "cpu": "reference layers, gloo between ranks",
}


def add_tensor_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensor-parallel-size",
        type=int,
        help="instead of the sweep: the engine as serve builds it at this TP size (its workers spawned by "
        "the parallel launcher; NCCL on CUDA, one GPU per rank; gloo on the CPU) beside TP=1 in the same "
        "run, bf16 (float32 on the CPU) and int8 per --weights, with the share of aggregate bandwidth",
    )
    parser.add_argument("--prompt-len", type=int, default=128, help="with --tensor-parallel-size")
    parser.add_argument("--new-tokens", type=int, default=128, help="with --tensor-parallel-size")
    parser.add_argument(
        "--max-model-len", type=int, help="with --tensor-parallel-size (default: prompt + new tokens + 16)"
    )


def write_checkpoint(shape: str, dtype: torch.dtype, directory: Path, device: torch.device) -> Path:
    """A Hugging Face layout directory for the shape: config.json, random N(0, 0.02) weights (norms
    1; drawn on ``device``, fast on a GPU) one safetensors file per layer, and a word-level
    tokenizer.json (the engine is fed token ids; the server's checkpoint opening needs one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    config = model_config_dict(shape)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(256)}, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(directory / "tokenizer.json"))
    hidden, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv_width = config["num_key_value_heads"] * head_dim
    generator = torch.Generator(device).manual_seed(0)

    def random(*size: int) -> torch.Tensor:
        tensor = torch.empty(size, dtype=dtype, device=device).normal_(0.0, 0.02, generator=generator)
        return tensor.cpu()

    save_file(
        {
            "model.embed_tokens.weight": random(vocab, hidden),
            "model.norm.weight": torch.ones(hidden, dtype=dtype),
            "lm_head.weight": random(vocab, hidden),
        },
        str(directory / "model-outer.safetensors"),
    )
    for index in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{index}."
        layer = {
            prefix + "input_layernorm.weight": torch.ones(hidden, dtype=dtype),
            prefix + "post_attention_layernorm.weight": torch.ones(hidden, dtype=dtype),
            prefix + "self_attn.q_proj.weight": random(hidden, hidden),
            prefix + "self_attn.k_proj.weight": random(kv_width, hidden),
            prefix + "self_attn.v_proj.weight": random(kv_width, hidden),
            prefix + "self_attn.o_proj.weight": random(hidden, hidden),
            prefix + "mlp.gate_proj.weight": random(ffn, hidden),
            prefix + "mlp.up_proj.weight": random(ffn, hidden),
            prefix + "mlp.down_proj.weight": random(hidden, ffn),
        }
        save_file(layer, str(directory / f"model-layer-{index:03d}.safetensors"))
    return directory


def measure(
    checkpoint: Path,
    size: int,
    weights: str,
    batches: list[int],
    args: argparse.Namespace,
    device: str,
    bandwidth: float,
) -> list[dict[str, Any]]:
    """Decode figures of the engine built at TP=``size``; its workers are stopped before returning."""
    max_batch = max(batches)
    blocks_per_seq = -(-args.max_model_len // BLOCK_SIZE)
    config = RuntimeConfig(
        model=str(checkpoint),
        device=device,
        dtype="bfloat16" if device == "cuda" else "float32",
        quantization="none" if weights == "bf16" else weights,
        max_model_len=args.max_model_len,
        max_num_seqs=max_batch,
        kv_cache_blocks=max_batch * blocks_per_seq + 8,
        block_size=BLOCK_SIZE,
        tensor_parallel_size=size,
    )
    label = "fp32" if weights == "bf16" and device == "cpu" else weights  # the CPU runs float32
    start = time.perf_counter()
    built = build_engine(config)
    print(f"  TP={size} {label}: engine ready in {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    try:
        model = built.engine.runner.model
        vocab = model.config.vocab_size
        rank_weight_bytes = streamed_weight_bytes(model)
        rank_kv_bytes_per_token = kv_cache_bytes_per_block(model, BLOCK_SIZE, getattr(torch, config.dtype))
        rank_kv_bytes_per_token //= BLOCK_SIZE
        for batch in batches:
            run_engine(built.engine, random_prompts(batch, args.prompt_len, vocab, seed=1), 4)  # warm-up
            total, _, step = run_engine(
                built.engine, random_prompts(batch, args.prompt_len, vocab, seed=2), args.new_tokens
            )
            context = args.prompt_len + args.new_tokens / 2
            rank_step_bytes = rank_weight_bytes + batch * context * rank_kv_bytes_per_token
            row = {
                "tensor_parallel_size": size,
                "weights": label,
                "batch": batch,
                "tokens_per_s": batch * args.new_tokens / total,
                "decode_step_ms": step * 1e3,
                "rank_step_bytes": rank_step_bytes,
                "aggregate_bandwidth_share": size * rank_step_bytes / step / (size * bandwidth),
            }
            rows.append(row)
            print(
                f"  TP={size} {label:>4} b{batch:<3} {row['tokens_per_s']:10.1f} tok/s  step "
                f"{row['decode_step_ms']:7.2f} ms  each rank streams {rank_step_bytes / 1e6:,.1f} MB/step  "
                f"{100 * row['aggregate_bandwidth_share']:5.1f}% of the aggregate bandwidth "
                f"({size} x {bandwidth / 1e12:.3f} TB/s)",
                flush=True,
            )
    finally:
        if built.workers is not None:
            built.workers.stop()
    return rows


def run_tensor_parallel(
    args: argparse.Namespace, shapes: list[str], weights: list[str], batches: list[int]
) -> int:
    """The TP=1 baseline then TP=N per shape and weights; figures saved to --json after every block."""
    size = args.tensor_parallel_size
    if size < 1 or args.prompt_len < 1 or args.new_tokens < 2:
        print(f"--tensor-parallel-size {size}, --prompt-len, --new-tokens: accepted >= 1, >= 1, >= 2")
        return 2
    if args.max_model_len is None:
        args.max_model_len = args.prompt_len + args.new_tokens + 16
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and size > torch.cuda.device_count():
        print(
            f"--tensor-parallel-size {size} needs one GPU per rank; this machine has "
            f"{torch.cuda.device_count()}: nothing was measured"
        )
        return 2
    bandwidth = device_copy_bandwidth(torch.device(device))
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (gloo; smoke test, not a figure)"
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    print(
        f"device: {name} ({gpus} GPU(s) visible); torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
        f"copy bandwidth {bandwidth / 1e12:.3f} TB/s per device; tensor_parallel_size {size} vs 1; "
        f"weights {'bf16' if device == 'cuda' else 'float32'} (int8: weight-only after sharding); "
        f"max_model_len {args.max_model_len}; prompt {args.prompt_len} + {args.new_tokens} new tokens "
        f"(mean context {args.prompt_len + args.new_tokens / 2:.0f}); block {BLOCK_SIZE}; engine as serve "
        f"builds it ({ENGINE_PATH[device]})",
        flush=True,
    )
    report: dict[str, Any] = {
        "device": name,
        "gpus": gpus,
        "torch": torch.__version__,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "tensor_parallel_size": size,
        "max_model_len": args.max_model_len,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "results": [],
        "errors": [],
    }
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with tempfile.TemporaryDirectory(prefix="berth-decode-tp-") as directory:
        workdir = Path(directory)
        for shape in shapes:
            print(f"{shape}: {json.dumps(SHAPES[shape])}", flush=True)
            checkpoint = write_checkpoint(shape, dtype, workdir / shape, torch.device(device))
            for weight in weights:
                for tp in dict.fromkeys((1, size)):
                    try:
                        rows = measure(checkpoint, tp, weight, batches, args, device, bandwidth)
                        report["results"] += [{"shape": shape, **row} for row in rows]
                    except Exception as error:  # one failing variant must not cost the rest of the run
                        print(f"  TP={tp} {weight} FAILED: {type(error).__name__}: {error}", flush=True)
                        report["errors"].append(f"{shape} {weight} TP={tp}: {type(error).__name__}: {error}")
                    gc.collect()  # the engine, its KV cache and decode graphs, before the next one
                    if device == "cuda":
                        torch.cuda.empty_cache()
                    if args.json is not None:
                        args.json.write_text(json.dumps(report, indent=2))
            print_speedups(report["results"], shape, size)
    return 1 if report["errors"] else 0


def print_speedups(results: list[dict[str, Any]], shape: str, size: int) -> None:
    """TP=N tokens/s over TP=1's for each (weights, batch) both measured."""
    if size == 1:
        return
    baseline = {
        (r["weights"], r["batch"]): r
        for r in results
        if r["shape"] == shape and r["tensor_parallel_size"] == 1
    }
    for row in results:
        key = (row["weights"], row["batch"])
        if row["shape"] == shape and row["tensor_parallel_size"] == size and key in baseline:
            ratio = row["tokens_per_s"] / baseline[key]["tokens_per_s"]
            print(f"  {shape} {key[0]} b{key[1]}: TP={size} is {ratio:.2f}x TP=1's tokens/s", flush=True)
