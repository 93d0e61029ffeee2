"""Per-kernel timings at decode shapes: where a step's time goes, and how close each kernel gets to
the copy bandwidth. Prints, on the machine it runs on:

- linear layers of the 1B and 8B shapes at batch 1, 8 and 64: cuBLAS bf16 (``F.linear``) beside the
  int8 and fp8 weight-only Triton kernel (default tiles and the best of a small tile sweep), each
  as microseconds and as a share of the copy bandwidth for the bytes it must read;
- paged decode attention at batch 1 and 64, context 256 and 4,096: KV bytes read per microsecond;
- the small fused kernels (add+RMSNorm, rotary, SiLU-mul, KV store) at batch 64: launch-bound times.

The figures tell the next tuning step (e.g. replace ``default_tile_sizes`` with the sweep's winners);
nothing passes or fails. Needs CUDA. Usage: python bench/kernels.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from berth_runtime.kernels.activation import silu_and_mul
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


def microseconds(fn: Any) -> float:
    return float(do_bench(fn, warmup=10, rep=40)) * 1e3


def copy_bandwidth() -> float:
    source = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    return 2 * source.numel() / (microseconds(lambda: target.copy_(source)) * 1e-6)


def tile_candidates(rows: int) -> list[tuple[int, int, int, int]]:
    """TILE_SWEEP (tensor cores), plus CUDA-core GEMV tiles (BLOCK_M = rows) for up to 8 rows."""
    if rows > 8:
        return TILE_SWEEP
    block_m = triton.next_power_of_2(rows)
    gemv = [
        (block_m, n, k // block_m, w) for n, k, w in ((16, 256, 4), (32, 256, 4), (64, 128, 4), (32, 512, 8))
    ]
    return TILE_SWEEP + gemv


def time_weight_only(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> dict[str, Any]:
    """Default tiles, and the best of the candidates for this many rows."""
    default_us = microseconds(lambda: weight_only_linear(x, qweight, scale))
    sweep: dict[tuple[int, int, int, int], float] = {}
    failed: dict[str, str] = {}
    for tiles in tile_candidates(x.shape[0]):
        try:
            sweep[tiles] = microseconds(lambda t=tiles: weight_only_linear(x, qweight, scale, None, t))
        except Exception as error:  # a tile that does not compile or fit is a finding, not the end of the run
            failed[str(tiles)] = f"{type(error).__name__}: {str(error)[:200]}"
    best = min(sweep, key=lambda tiles: sweep[tiles])
    return {"default_us": default_us, "best_us": sweep[best], "best_tiles": best, "failed_tiles": failed}


def bench_linear(name: str, weight: torch.Tensor, batch: int, bandwidth: float, fp8: bool) -> dict[str, Any]:
    x = torch.randn(batch, weight.shape[1], device="cuda", dtype=torch.bfloat16)
    bf16_us = microseconds(lambda: F.linear(x, weight))
    row: dict[str, Any] = {"layer": name, "batch": batch, "bf16_us": bf16_us}
    line = f"{name:>11} b{batch:<3} cuBLAS bf16 {bf16_us:7.1f} us {share(weight.nbytes, bf16_us, bandwidth)}"
    schemes = {"int8": quantize_int8} | ({"fp8": quantize_fp8} if fp8 else {})
    for scheme, quantize in schemes.items():
        qweight, scale = quantize(weight)
        timing = time_weight_only(x, qweight, scale)
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
            us = microseconds(
                lambda q=query, k=key_cache, v=value_cache, t=tables, n=lens, c=context: (
                    paged_attention_decode(q, k, v, t, n, 128**-0.5, max_context_len=c)
                )
            )
            kv_bytes = 2 * key_cache.nbytes
            print(
                f"paged decode b{batch:<3} context {context:5}: {us:8.1f} us {share(kv_bytes, us, bandwidth)}"
            )
            results.append({"batch": batch, "context": context, "us": us})
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
    timings = {
        "add_rms_norm": microseconds(lambda: add_rms_norm(x, residual, weight, 1e-5)),
        "rotary": microseconds(lambda: apply_rotary_embedding(query, key, positions, table, table)),
        "silu_and_mul": microseconds(lambda: silu_and_mul(gate_up)),
        "store_kv_cache": microseconds(lambda: store_kv_cache(key, value, key_cache, value_cache, slots)),
        "rotary_and_store_kv (fused)": microseconds(
            lambda: rotary_and_store_kv(
                query, key, value, positions, table, table, key_cache, value_cache, slots
            )
        ),
    }
    for name, us in timings.items():
        print(f"{name:>27} b{batch}: {us:6.1f} us")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/kernels.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured.")
        return 2
    bandwidth = copy_bandwidth()
    fp8 = torch.cuda.get_device_capability() >= (8, 9)
    print(f"GPU: {torch.cuda.get_device_name()}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; fp8 {fp8}")
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "copy_bandwidth_bytes_per_s": bandwidth}
    # quickest first, each part saved as it lands: a run cut short keeps what it measured
    for part, measure in (
        ("small", bench_small_kernels),
        ("attention", lambda: bench_attention(bandwidth)),
        ("linear", lambda: bench_linears(bandwidth, fp8)),
    ):
        report[part] = measure()
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
