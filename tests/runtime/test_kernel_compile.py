"""Every Triton kernel compiles to GPU machine code (sm_90 Hopper and sm_80 Ampere) with the
specialisations its wrapper launches at production shapes — checked on a machine without a GPU.

The interpreter (how the other kernel tests run in CI) executes kernels as Python and so cannot see
what only the GPU compiler rejects: dot shapes, loop-carried types, mixed integer widths, fp8 on
the wrong architecture. Triton compiles ahead of time for a named target with no driver present, so
this test does, in a subprocess without ``TRITON_INTERPRET`` (``python tests/runtime/test_kernel_compile.py``
runs the same check directly and lists what it compiled).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kernel_compile_cases import int4_and_expert_cases

ACTIVATION = "*bf16"
# opt-in shared memory per thread block: A100 (sm_80) 163 KiB, H100/H200 (sm_90) 227 KiB
SHARED_MEMORY_PER_BLOCK = {80: 163 * 1024, 90: 227 * 1024}


def _compile_cases() -> list[
    tuple[str, Any, dict[str, str], dict[str, Any], dict[str, int], tuple[int, ...]]
]:
    """(label, kernel, signature, constexprs, options, capabilities) for every launch variant."""
    import triton.language as tl

    from berth_runtime.kernels import (
        activation,
        kv_cache_store,
        paged_attention,
        rms_norm,
        rotary,
        rotary_kv_store,
    )
    from berth_runtime.kernels import weight_only_linear as weight_only

    both = (80, 90)
    cases: list[tuple[str, Any, dict[str, str], dict[str, Any], dict[str, int], tuple[int, ...]]] = []
    for dtype, has_residual in (("*bf16", False), ("*bf16", True), ("*fp32", True)):
        cases.append(
            (
                f"rms_norm {dtype} residual={has_residual}",
                rms_norm._rms_norm_kernel,
                {
                    **dict.fromkeys(
                        ["input_ptr", "residual_ptr", "residual_out_ptr", "weight_ptr", "output_ptr"], dtype
                    ),
                    **dict.fromkeys(
                        [
                            "input_row_stride",
                            "residual_row_stride",
                            "residual_out_row_stride",
                            "output_row_stride",
                            "hidden_size",
                        ],
                        "i32",
                    ),
                    "eps": "fp32",
                    "HAS_RESIDUAL": "constexpr",
                    "BLOCK": "constexpr",
                },
                {"HAS_RESIDUAL": has_residual, "BLOCK": 4096},
                {"num_warps": 16},
                both,
            )
        )
    cases.append(
        (
            "silu_and_mul bf16",
            activation._silu_and_mul_kernel,
            {
                "input_ptr": ACTIVATION,
                "output_ptr": ACTIVATION,
                **dict.fromkeys(["input_row_stride", "output_row_stride", "intermediate_size"], "i32"),
                "BLOCK": "constexpr",
            },
            {"BLOCK": 1024},
            {"num_warps": 4},
            both,
        )
    )
    cases.append(
        (
            "rotary bf16 head_dim 128, 32/8 heads",
            rotary._rotary_kernel,
            {
                "positions_ptr": "*i64",
                "query_ptr": ACTIVATION,
                "key_ptr": ACTIVATION,
                "cos_ptr": "*fp32",
                "sin_ptr": "*fp32",
                **dict.fromkeys(
                    [
                        "query_token_stride",
                        "query_head_stride",
                        "key_token_stride",
                        "key_head_stride",
                        "cos_row_stride",
                        "sin_row_stride",
                        "num_query_heads",
                        "num_key_heads",
                    ],
                    "i32",
                ),
                **dict.fromkeys(["HALF", "BLOCK_QUERY_HEADS", "BLOCK_KEY_HEADS"], "constexpr"),
            },
            {"HALF": 64, "BLOCK_QUERY_HEADS": 32, "BLOCK_KEY_HEADS": 8},
            {"num_warps": 4},
            both,
        )
    )
    cases.append(
        (
            "rotary + store_kv bf16 head_dim 128, 32/8 heads",
            rotary_kv_store._rotary_store_kv_kernel,
            {
                "positions_ptr": "*i64",
                "slot_mapping_ptr": "*i64",
                **dict.fromkeys(["query_ptr", "key_ptr", "value_ptr"], ACTIVATION),
                "cos_ptr": "*fp32",
                "sin_ptr": "*fp32",
                **dict.fromkeys(["key_cache_ptr", "value_cache_ptr"], ACTIVATION),
                **dict.fromkeys(
                    [
                        "query_token_stride",
                        "query_head_stride",
                        "key_token_stride",
                        "key_head_stride",
                        "value_token_stride",
                        "value_head_stride",
                        "cos_row_stride",
                        "sin_row_stride",
                        "num_query_heads",
                        "num_kv_heads",
                    ],
                    "i32",
                ),
                **dict.fromkeys(["HALF", "BLOCK_QUERY_HEADS", "BLOCK_KV_HEADS"], "constexpr"),
            },
            {"HALF": 64, "BLOCK_QUERY_HEADS": 32, "BLOCK_KV_HEADS": 8},
            {"num_warps": 4},
            both,
        )
    )
    cases.append(
        (
            "store_kv bf16, int64 slots",
            kv_cache_store._store_kv_kernel,
            {
                **dict.fromkeys(["key_ptr", "value_ptr", "key_cache_ptr", "value_cache_ptr"], ACTIVATION),
                "slot_mapping_ptr": "*i64",
                **dict.fromkeys(
                    [
                        "key_token_stride",
                        "key_head_stride",
                        "value_token_stride",
                        "value_head_stride",
                        "num_kv_heads",
                    ],
                    "i32",
                ),
                **dict.fromkeys(["HEAD_DIM", "BLOCK_HEADS", "BLOCK_DIM"], "constexpr"),
            },
            {"HEAD_DIM": 128, "BLOCK_HEADS": 8, "BLOCK_DIM": 128},
            {"num_warps": 4},
            both,
        )
    )
    for activation_type, index_type, split in (
        ("*bf16", "*i64", False),
        ("*bf16", "*i64", True),
        ("*bf16", "*i32", False),
        ("*fp32", "*i64", True),
    ):
        cases.append(
            (
                f"paged decode {activation_type} GQA 32/8 head_dim 128, {index_type} tables, split={split}",
                paged_attention._paged_decode_kernel,
                {
                    **dict.fromkeys(["query_ptr", "key_cache_ptr", "value_cache_ptr"], activation_type),
                    "block_tables_ptr": index_type,
                    "context_lens_ptr": index_type,
                    "output_ptr": activation_type,
                    **dict.fromkeys(["partial_out_ptr", "partial_max_ptr", "partial_sum_ptr"], "*fp32"),
                    **dict.fromkeys(
                        [
                            "query_seq_stride",
                            "query_head_stride",
                            "output_seq_stride",
                            "output_head_stride",
                            "block_table_stride",
                            "context_lens_stride",
                            "num_kv_heads",
                            "block_size",
                            "num_partitions",
                        ],
                        "i32",
                    ),
                    "query_scale": "fp32",
                    "sliding_window": "i32",
                    "softcap": "fp32",
                    **dict.fromkeys(
                        [
                            "GROUP",
                            "HEAD_DIM",
                            "BLOCK_GROUP",
                            "BLOCK_DIM",
                            "TILE",
                            "PARTITION",
                            "SPLIT",
                            "WINDOWED",
                            "SOFTCAP",
                            "DOT_DTYPE",
                            "DOT_PRECISION",
                        ],
                        "constexpr",
                    ),
                },
                {
                    "GROUP": 4,
                    "HEAD_DIM": 128,
                    "BLOCK_GROUP": 16,
                    "BLOCK_DIM": 128,
                    "TILE": paged_attention._TILE_TOKENS,
                    "PARTITION": paged_attention.PARTITION_TOKENS,
                    "SPLIT": split,
                    "WINDOWED": split,  # Gemma's sliding, soft-capped layers on the split path
                    "SOFTCAP": split,
                    "DOT_DTYPE": tl.float32 if activation_type == "*fp32" else tl.bfloat16,
                    "DOT_PRECISION": "ieee" if activation_type == "*fp32" else "tf32",
                },
                {"num_warps": 4},
                both,
            )
        )
    for windowed in (False, True):
        cases.append(
            (
                f"paged decode merge bf16 windowed={windowed}",
                paged_attention._merge_kernel,
                {
                    "output_ptr": ACTIVATION,
                    **dict.fromkeys(["partial_out_ptr", "partial_max_ptr", "partial_sum_ptr"], "*fp32"),
                    "context_lens_ptr": "*i32",
                    **dict.fromkeys(
                        [
                            "output_seq_stride",
                            "output_head_stride",
                            "context_lens_stride",
                            "num_query_heads",
                            "num_partitions",
                            "sliding_window",
                        ],
                        "i32",
                    ),
                    **dict.fromkeys(
                        ["HEAD_DIM", "BLOCK_DIM", "BLOCK_PARTITIONS", "CHUNK", "PARTITION", "WINDOWED"],
                        "constexpr",
                    ),
                },
                {
                    "HEAD_DIM": 128,
                    "BLOCK_DIM": 128,
                    "BLOCK_PARTITIONS": 256,
                    "CHUNK": paged_attention._MERGE_CHUNK,
                    "PARTITION": paged_attention.PARTITION_TOKENS,
                    "WINDOWED": windowed,
                },
                {"num_warps": 4},
                both,
            )
        )
    # block_scales: block-wise FP8 (128 x 128 blocks, BLOCK_K capped to 128 as the wrapper does)
    for weight_type, activation_type, capabilities, block_scales in (
        ("*i8", ACTIVATION, both, False),
        ("*fp8e4nv", ACTIVATION, (90,), False),
        ("*i8", "*fp32", (90,), False),
        ("*fp8e4nv", ACTIVATION, (90,), True),
    ):
        for rows, has_bias in ((1, True), (64, False), (512, False)):
            block_m, block_n, block_k, num_warps = weight_only.default_tile_sizes(rows)
            block_k = min(block_k, 128) if block_scales else block_k
            cases.append(
                (
                    f"weight-only {weight_type} x {activation_type} rows={rows} bias={has_bias}"
                    + (" 128x128 blocks" if block_scales else ""),
                    weight_only._weight_only_matmul_kernel,
                    {
                        "input_ptr": activation_type,
                        "weight_ptr": weight_type,
                        "scale_ptr": "*fp32",
                        "bias_ptr": activation_type,
                        "output_ptr": activation_type,
                        **dict.fromkeys(
                            [
                                "rows",
                                "out_features",
                                "in_features",
                                "input_row_stride",
                                "weight_row_stride",
                                "output_row_stride",
                                "scale_row_stride",
                                "scale_block_rows",
                                "scale_block_columns",
                            ],
                            "i32",
                        ),
                        **dict.fromkeys(
                            [
                                "HAS_BIAS",
                                "BLOCK_SCALES",
                                "BLOCK_M",
                                "BLOCK_N",
                                "BLOCK_K",
                                "DOT_DTYPE",
                                "DOT_PRECISION",
                            ],
                            "constexpr",
                        ),
                    },
                    {
                        "HAS_BIAS": has_bias,
                        "BLOCK_SCALES": block_scales,
                        "BLOCK_M": block_m,
                        "BLOCK_N": block_n,
                        "BLOCK_K": block_k,
                        "DOT_DTYPE": tl.float32 if activation_type == "*fp32" else tl.bfloat16,
                        "DOT_PRECISION": "ieee" if activation_type == "*fp32" else "tf32",
                    },
                    {"num_warps": num_warps, "num_stages": 4},
                    capabilities,
                )
            )
    return cases + int4_and_expert_cases(both)


def compile_all() -> list[str]:
    """Compiles every case for its capabilities; returns one line per compiled kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    compiled = []
    for label, kernel, signature, constexprs, options, capabilities in _compile_cases():
        for capability in capabilities:
            source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
            binary = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
            shared = binary.metadata.shared
            if shared > SHARED_MEMORY_PER_BLOCK[capability]:
                raise RuntimeError(
                    f"sm_{capability} {label}: needs {shared} bytes of shared memory per block, the GPU "
                    f"offers {SHARED_MEMORY_PER_BLOCK[capability]}: the launch would fail with OutOfResources"
                )
            compiled.append(
                f"sm_{capability} {label}: {len(binary.asm['cubin'])} bytes of cubin, {shared} B shared"
            )
    return compiled


@pytest.mark.slow
def test_every_kernel_compiles_for_hopper_and_ampere(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    environment["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    result = subprocess.run(
        [sys.executable, __file__], env=environment, capture_output=True, text=True, timeout=540, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "every kernel compiled" in result.stdout


if __name__ == "__main__":
    lines = compile_all()
    print("\n".join(lines))
    print(f"every kernel compiled: {len(lines)} binaries")
