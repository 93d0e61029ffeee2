"""Per-kernel timings at decode shapes: where a step's time goes, and how close each kernel gets to
the copy bandwidth. Prints, on the machine it runs on:

- linear layers of the 1B and 8B shapes at batch 1, 8 and 64: cuBLAS bf16 (``F.linear``) beside the
  int8, fp8 (scale per row) and block-wise fp8 (a scale per 128 x 128 block, as Qwen3's FP8
  checkpoints store their linears) weight-only Triton kernel (default tiles and every tile of a small
  sweep; block-wise K tiles capped to 128), each as microseconds and as a share of the copy
  bandwidth for the bytes it must read;
- paged decode attention at batch 1 and 64, context 256 and 4,096: KV bytes read per microsecond,
  launched for the context itself and for a graph captured at the default max_model_len of a
  128k-token model (``max_context_len`` 131,072: 256 partitions, most without keys);
- the small fused kernels (add+RMSNorm, rotary, SiLU-mul, KV store) at batch 64;
- the int4 (AWQ/GPTQ layout, group 128) dequant kernel on the same linear shapes at batch 1, 8 and
  64: default tiles, and at batch 1 the CUDA-core GEMV beside the 16-row tensor-core tile, each as a
  share of the copy bandwidth for the packed weight, scales and zeros it reads;
- the fused MoE experts (Mixtral 8x7B and Qwen3-30B-A3B shapes) at batch 1, 8 and 64, with bf16
  experts beside experts kept as a pre-quantized checkpoint stores them (int4 group 128, and FP8
  with a scale per row or per 128 x 128 block where the GPU runs e4m3): the bytes are the experts
  the step's routing chose (each read once, its packed words, scales and zeros included), the share
  as above.

Every time is GPU time per call as the engine's decode graphs see it: the calls are captured back
to back in one CUDA graph (no Python between launches; launch gaps and tails included) and each
call reads its own copy of the weights or cache, enough copies to overflow the L2 cache, as every
layer of a real step does. Timing a Python loop instead measures the wrapper's host time for any
kernel under ~20 us. Nothing passes or fails. Needs CUDA. Usage: python bench/kernels.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# bench/ is this script's directory, hence on sys.path
from decode_models import device_copy_bandwidth

from berth_runtime.kernels.activation import silu_and_mul
from berth_runtime.kernels.expert_weights import ExpertWeights
from berth_runtime.kernels.fused_moe import fused_experts
from berth_runtime.kernels.int4_linear import int4_linear
from berth_runtime.kernels.kv_cache_store import store_kv_cache
from berth_runtime.kernels.paged_attention import paged_attention_decode
from berth_runtime.kernels.rms_norm import add_rms_norm
from berth_runtime.kernels.rotary import apply_rotary_embedding
from berth_runtime.kernels.rotary_kv_store import rotary_and_store_kv
from berth_runtime.kernels.weight_only_linear import default_tile_sizes, weight_only_linear
from berth_runtime.quantization.quantize import quantize_fp8, quantize_int8

LINEAR_SHAPES = {  # name: (out_features, in_features)
    "1b qkv": (3072, 2048),
    "1b o": (2048, 2048),
    "1b gate_up": (16384, 2048),
    "1b down": (2048, 8192),
    "8b qkv": (6144, 4096),
    "8b o": (4096, 4096),
    "8b gate_up": (28672, 4096),
    "8b down": (4096, 14336),
}
TILE_SWEEP = [
    (16, 16, 256, 4),
    (16, 32, 256, 4),
    (16, 64, 128, 4),
    (16, 128, 128, 8),
    (64, 64, 128, 4),
    (64, 128, 64, 8),
]


L2_OVERFLOW_BYTES = 512 << 20
"""Distinct operand bytes a timed graph cycles through: several times the L2 (50-60 MB on Hopper)."""
CALLS_PER_GRAPH = 64
GRAPH_MAX_CONTEXT = 131_072
"""max_context_len of a decode graph at Llama-3.1's default max_model_len: what users run."""


def graph_microseconds(calls: list[Callable[[], object]]) -> float:
    """GPU microseconds per call: ``calls`` (cycled to CALLS_PER_GRAPH) captured back to back in one
    CUDA graph, median of 5 timed replays after a warm-up run and one warm-up replay."""
    sequence = [calls[index % len(calls)] for index in range(max(CALLS_PER_GRAPH, len(calls)))]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compiles Triton kernels and warms cuBLAS outside the capture
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in sequence:
            call()
    graph.replay()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(sequence))
    return statistics.median(times)


def distinct_copies(*tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """``tensors`` and clones of them, as many as it takes to overflow the L2 (at most 64)."""
    size = sum(tensor.nbytes for tensor in tensors)
    count = min(64, max(1, -(-L2_OVERFLOW_BYTES // size)))
    return [tensors] + [tuple(tensor.clone() for tensor in tensors) for _ in range(count - 1)]


def quantize_fp8_blocks(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e4m3 weight and a float32 scale per 128 x 128 block (the shapes here are whole blocks)."""
    blocks = weight.float().unflatten(0, (-1, 128)).unflatten(2, (-1, 128))  # [rows, 128, columns, 128]
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0
    stored = (blocks / scale[:, None, :, None]).flatten(2).flatten(0, 1).to(torch.float8_e4m3fn)
    return stored, scale


def time_weight_only(
    x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, block_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Default tiles, and every tile of the sweep."""
    copies = distinct_copies(qweight, scale)
    default_us = graph_microseconds(
        [lambda q=q, s=s: weight_only_linear(x, q, s, block_size=block_size) for q, s in copies]
    )
    sweep: dict[str, float] = {}
    failed: dict[str, str] = {}
    for tiles in TILE_SWEEP:
        try:
            sweep[str(tiles)] = graph_microseconds(
                [
                    lambda q=q, s=s, t=tiles: weight_only_linear(x, q, s, None, t, block_size)
                    for q, s in copies
                ]
            )
        except Exception as error:  # a tile that does not compile or fit is a finding, not the end of the run
            failed[str(tiles)] = f"{type(error).__name__}: {str(error)[:200]}"
    best = min(sweep, key=lambda tiles: sweep[tiles])
    return {
        "default_us": default_us,
        "best_us": sweep[best],
        "best_tiles": best,
        "sweep_us": sweep,
        "failed_tiles": failed,
    }


def bench_linear(name: str, weight: torch.Tensor, batch: int, bandwidth: float, fp8: bool) -> dict[str, Any]:
    x = torch.randn(batch, weight.shape[1], device="cuda", dtype=torch.bfloat16)
    bf16_us = graph_microseconds([lambda w=w: F.linear(x, w) for (w,) in distinct_copies(weight)])
    row: dict[str, Any] = {"layer": name, "batch": batch, "bf16_us": bf16_us}
    line = f"{name:>11} b{batch:<3} cuBLAS bf16 {bf16_us:7.1f} us {share(weight.nbytes, bf16_us, bandwidth)}"
    schemes = {"int8": quantize_int8} | (
        {"fp8": quantize_fp8, "fp8-block": quantize_fp8_blocks} if fp8 else {}
    )
    for scheme, quantize in schemes.items():
        qweight, scale = quantize(weight)
        timing = time_weight_only(x, qweight, scale, (128, 128) if scheme == "fp8-block" else None)
        row[scheme] = timing
        line += (
            f" | {scheme} {timing['default_us']:7.1f} us"
            f" {share(qweight.nbytes, timing['default_us'], bandwidth)}"
            f" (best {timing['best_us']:.1f} us with {timing['best_tiles']})"
        )
    print(line, flush=True)
    return row


def bench_linears(bandwidth: float, fp8: bool) -> list[dict[str, Any]]:
    defaults = ", ".join(f"b{batch} {default_tile_sizes(batch)}" for batch in (1, 8, 64))
    print(f"weight-only default tiles (BLOCK_M, BLOCK_N, BLOCK_K, warps): {defaults}")
    rows = []
    for name, (out_features, in_features) in LINEAR_SHAPES.items():
        weight = torch.randn(out_features, in_features, device="cuda", dtype=torch.bfloat16) * 0.02
        rows += [bench_linear(name, weight, batch, bandwidth, fp8) for batch in (1, 8, 64)]
    return rows


def share(num_bytes: int, us: float, bandwidth: float) -> str:
    return f"{100 * num_bytes / (us * 1e-6) / bandwidth:5.1f}%"


def bench_attention(bandwidth: float) -> list[dict[str, Any]]:
    results = []
    for batch in (1, 64):
        for context in (256, 4096):
            blocks_per_seq = context // 16
            key_cache = torch.randn(batch * blocks_per_seq, 16, 8, 128, device="cuda", dtype=torch.bfloat16)
            value_cache = torch.randn_like(key_cache)
            tables = torch.randperm(batch * blocks_per_seq, device="cuda").view(batch, blocks_per_seq).int()
            lens = torch.full((batch,), context, dtype=torch.int32, device="cuda")
            query = torch.randn(batch, 32, 128, device="cuda", dtype=torch.bfloat16)
            kv_bytes = 2 * key_cache.nbytes
            for graph_len in (context, GRAPH_MAX_CONTEXT):
                us = graph_microseconds(
                    [
                        lambda q=query, k=k, v=v, t=tables, n=lens, c=graph_len: paged_attention_decode(
                            q, k, v, t, n, 128**-0.5, max_context_len=c
                        )
                        for k, v in distinct_copies(key_cache, value_cache)
                    ]
                )
                print(
                    f"paged decode b{batch:<3} context {context:5} max_context_len {graph_len:6}: "
                    f"{us:8.1f} us {share(kv_bytes, us, bandwidth)}"
                )
                results.append({"batch": batch, "context": context, "max_context_len": graph_len, "us": us})
    return results


def bench_small_kernels() -> dict[str, float]:
    batch, hidden = 64, 4096
    x = torch.randn(batch, hidden, device="cuda", dtype=torch.bfloat16)
    residual = torch.randn_like(x)
    weight = torch.randn(hidden, device="cuda", dtype=torch.bfloat16)
    gate_up = torch.randn(batch, 2 * 14336, device="cuda", dtype=torch.bfloat16)
    qkv = torch.randn(batch, 48 * 128, device="cuda", dtype=torch.bfloat16)
    query, key = qkv[:, : 32 * 128].view(batch, 32, 128), qkv[:, 32 * 128 : 40 * 128].view(batch, 8, 128)
    value = qkv[:, 40 * 128 :].view(batch, 8, 128)
    table = torch.randn(4096, 128, device="cuda")
    positions = torch.randint(0, 4096, (batch,), device="cuda")
    key_cache = torch.zeros(1024, 16, 8, 128, device="cuda", dtype=torch.bfloat16)
    value_cache = torch.zeros_like(key_cache)
    slots = torch.randperm(1024 * 16, device="cuda")[:batch]
    # activations this small stay in L2 between a real step's kernels too: no copies
    timings = {
        "add_rms_norm": graph_microseconds([lambda: add_rms_norm(x, residual, weight, 1e-5)]),
        "rotary": graph_microseconds([lambda: apply_rotary_embedding(query, key, positions, table, table)]),
        "silu_and_mul": graph_microseconds([lambda: silu_and_mul(gate_up)]),
        "store_kv_cache": graph_microseconds(
            [lambda: store_kv_cache(key, value, key_cache, value_cache, slots)]
        ),
        "rotary_and_store_kv (fused)": graph_microseconds(
            [
                lambda: rotary_and_store_kv(
                    query, key, value, positions, table, table, key_cache, value_cache, slots
                )
            ]
        ),
    }
    for name, us in timings.items():
        print(f"{name:>27} b{batch}: {us:6.1f} us")
    return timings


GROUP = 128
MOE_SHAPES = {  # name: (experts, top_k, hidden, intermediate)
    "mixtral-8x7b": (8, 2, 4096, 14336),
    "qwen3-30b-a3b": (128, 8, 2048, 768),
}


def random_int4(
    out_features: int, in_features: int, experts: tuple[int, ...] = ()
) -> tuple[torch.Tensor, ...]:
    """Packed words, fp16 scales and uint8 zeros in berth's int4 layout (kernels.int4_linear), with
    `experts` leading dimensions for stacked experts."""
    rows, groups = (*experts, out_features), in_features // GROUP
    qweight = torch.randint(-(2**31), 2**31 - 1, (*rows, in_features // 8), device="cuda", dtype=torch.int32)
    scale = (torch.rand(*rows, groups, device="cuda") * 0.01).half()
    zero = torch.randint(0, 16, (*rows, groups), device="cuda", dtype=torch.uint8)
    return qweight, scale, zero


def bench_int4(bandwidth: float) -> list[dict[str, Any]]:
    rows = []
    for name, (out_features, in_features) in LINEAR_SHAPES.items():
        copies = distinct_copies(*random_int4(out_features, in_features))
        weight_bytes = sum(tensor.nbytes for tensor in copies[0])
        for batch in (1, 8, 64):
            x = torch.randn(batch, in_features, device="cuda", dtype=torch.bfloat16)
            variants = {"default": None} | (
                {"gemv": (1, 32, 128, 4), "dot16": (16, 32, 128, 4)} if batch == 1 else {}
            )
            timings = {
                variant: graph_microseconds(
                    [
                        lambda q=q, s=s, z=z, t=tiles, x=x: int4_linear(x, q, s, z, None, t)
                        for q, s, z in copies
                    ]
                )
                for variant, tiles in variants.items()
            }
            line = " | ".join(
                f"{variant} {us:7.1f} us {share(weight_bytes, us, bandwidth)}"
                for variant, us in timings.items()
            )
            print(f"{name:>11} b{batch:<3} int4 {line}", flush=True)
            rows.append({"layer": name, "batch": batch, "bytes": weight_bytes, "us": timings})
    return rows


def stacked_experts(form: str, experts: int, out_features: int, in_features: int) -> ExpertWeights:
    """Random experts [experts, out, in] as bf16, int4 (group 128), FP8 with a scale per row, or FP8
    with a scale per 128 x 128 block (Qwen3's FP8 checkpoints)."""
    shape = (experts, out_features, in_features)
    if form == "int4":
        return ExpertWeights(*random_int4(out_features, in_features, (experts,)))
    weight = torch.randn(*shape, device="cuda", dtype=torch.bfloat16) * 0.02
    stored = (weight * 5000).clamp(-448, 448).to(torch.float8_e4m3fn)
    if form == "fp8":
        return ExpertWeights(stored, torch.rand(experts, out_features, device="cuda") * 1e-3)
    if form == "fp8-block":
        blocks = (experts, -(-out_features // 128), -(-in_features // 128))
        return ExpertWeights(stored, torch.rand(*blocks, device="cuda") * 1e-3, block_size=(128, 128))
    return ExpertWeights(weight)


def bench_moe(bandwidth: float, fp8: bool) -> list[dict[str, Any]]:
    rows = []
    forms = ("bf16", "int4", "fp8", "fp8-block") if fp8 else ("bf16", "int4")
    for name, (experts, top_k, hidden, intermediate) in MOE_SHAPES.items():
        stacks = {
            form: (
                stacked_experts(form, experts, 2 * intermediate, hidden),
                stacked_experts(form, experts, hidden, intermediate),
            )
            for form in forms
        }
        per_expert = {
            form: sum(t.nbytes for w in pair for t in (w.weight, w.scale, w.zero) if t is not None) // experts
            for form, pair in stacks.items()
        }
        for batch in (1, 8, 64):
            x = torch.randn(batch, hidden, device="cuda", dtype=torch.bfloat16)
            router = torch.softmax(torch.randn(batch, experts, device="cuda"), dim=-1)
            weights, expert_ids = torch.topk(router, top_k, dim=-1)
            chosen = int(torch.unique(expert_ids).numel())
            timings = {
                form: graph_microseconds(
                    [
                        lambda x=x, g=gate_up, d=down, w=weights, e=expert_ids: fused_experts(
                            x, g, d, w, e, silu_and_mul
                        )
                    ]
                )
                for form, (gate_up, down) in stacks.items()
            }
            line = " | ".join(
                f"{form} {us:8.1f} us {share(chosen * per_expert[form], us, bandwidth)}"
                for form, us in timings.items()
            )
            print(f"{name:>14} b{batch:<3} fused experts ({chosen} of {experts} chosen): {line}", flush=True)
            rows.append({"model": name, "batch": batch, "experts_read": chosen, "us": timings})
        del stacks
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/kernels.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured.")
        return 2
    # eager, as bench/decode.py measures it: the same copy captured in a CUDA graph moved only 2.72
    # TB/s on an H200 (4.16 eager), which would overstate every share below by half
    bandwidth = device_copy_bandwidth(torch.device("cuda"))
    fp8 = torch.cuda.get_device_capability() >= (8, 9)
    print(f"GPU: {torch.cuda.get_device_name()}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; fp8 {fp8}")
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "copy_bandwidth_bytes_per_s": bandwidth}
    # the linears (most of a step's bytes) first; each part saved as it lands, so a run cut short
    # keeps what it measured, and a part that fails is reported without costing the others
    for part, measure in (
        ("linear", lambda: bench_linears(bandwidth, fp8)),
        ("attention", lambda: bench_attention(bandwidth)),
        ("small", bench_small_kernels),
        ("int4", lambda: bench_int4(bandwidth)),
        ("moe", lambda: bench_moe(bandwidth, fp8)),
    ):
        try:
            report[part] = measure()
        except Exception as error:
            print(f"{part} FAILED: {type(error).__name__}: {error}", flush=True)
            report[part] = {"error": f"{type(error).__name__}: {error}"}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
