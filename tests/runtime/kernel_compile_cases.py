"""The compile check's cases (tests/runtime/test_kernel_compile.py) for the int4 dequant-GEMM/GEMV, the
grouped expert matmul (float, int4, FP8 and block-wise FP8 experts) and the soft-capped flash
prefill, at the shapes their wrappers launch."""

from __future__ import annotations

from typing import Any

Case = tuple[str, Any, dict[str, str], dict[str, Any], dict[str, int], tuple[int, ...]]


def int4_and_expert_cases(capabilities: tuple[int, ...]) -> list[Case]:
    import triton.language as tl

    from berth_runtime.kernels import flash_prefill, fused_moe, int4_linear

    cases: list[Case] = []
    for rows in (1, 4, 16, 64, 512):
        block_m, block_n, block_k, num_warps = int4_linear.default_tile_sizes(rows, 128)
        use_dot = block_m >= 16
        cases.append(
            (
                f"int4 bf16 rows={rows} group 128 {'dot' if use_dot else 'gemv'}",
                int4_linear._int4_matmul_kernel,
                {
                    "input_ptr": "*bf16",
                    "qweight_ptr": "*i32",
                    "scale_ptr": "*fp16",
                    "zero_ptr": "*u8",
                    "bias_ptr": "*bf16",
                    "output_ptr": "*bf16",
                    **dict.fromkeys(
                        [
                            "rows",
                            "out_features",
                            "in_features",
                            "groups",
                            "group_size",
                            "input_row_stride",
                            "output_row_stride",
                        ],
                        "i32",
                    ),
                    **dict.fromkeys(
                        [
                            "HAS_BIAS",
                            "USE_DOT",
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
                    "HAS_BIAS": rows == 1,
                    "USE_DOT": use_dot,
                    "BLOCK_M": block_m,
                    "BLOCK_N": block_n,
                    "BLOCK_K": block_k,
                    "DOT_DTYPE": tl.bfloat16,
                    "DOT_PRECISION": "tf32",
                },
                {"num_warps": num_warps, "num_stages": 4 if use_dot else 2},
                capabilities,
            )
        )
    # (label, weight, scale, output, router-scaled, int4, scale per "tile" or "row", act-order, BLOCK_K,
    # capabilities)
    fp8_targets = tuple(c for c in capabilities if c >= 89)
    expert_variants = [
        ("float bf16 -> bf16", "*bf16", "*bf16", "*bf16", False, False, "", False, 64, capabilities),
        ("float bf16 -> fp32", "*bf16", "*bf16", "*fp32", True, False, "", False, 64, capabilities),
        ("int4 group 128 act-order", "*i32", "*fp16", "*bf16", False, True, "tile", True, 64, capabilities),
        ("int4 group 32 -> fp32", "*i32", "*fp32", "*fp32", True, True, "tile", False, 32, capabilities),
        # e4m3 needs compute capability >= 8.9: FP8 experts are dequantized at load below that
        ("fp8 e4m3 row scales", "*fp8e4nv", "*fp32", "*fp32", True, False, "row", False, 64, fp8_targets),
        (
            "fp8 e4m3 128x128 blocks",
            "*fp8e4nv",
            "*fp32",
            "*bf16",
            False,
            False,
            "tile",
            False,
            64,
            fp8_targets,
        ),
    ]
    for label, weight, scale, output_type, scaled, int4, scales, ordered, block_k, targets in expert_variants:
        cases.append(
            (
                f"grouped expert matmul {label} router-scaled={scaled}",
                fused_moe._grouped_matmul_kernel,
                {
                    "input_ptr": "*bf16",
                    "weight_ptr": weight,
                    "scale_ptr": scale,
                    "zero_ptr": "*u8" if int4 else weight,
                    "order_ptr": "*i32" if ordered else weight,
                    "output_ptr": output_type,
                    **dict.fromkeys(["pair_ids_ptr", "block_experts_ptr"], "*i32"),
                    "router_weights_ptr": "*fp32",
                    **dict.fromkeys(
                        [
                            "num_pairs",
                            "num_experts",
                            "out_features",
                            "in_features",
                            "scale_rows",
                            "rows_per_scale",
                            "groups",
                            "group_size",
                            "top_k",
                            "input_row_stride",
                            "output_row_stride",
                        ],
                        "i32",
                    ),
                    **dict.fromkeys(
                        [
                            "INPUT_PER_TOKEN",
                            "SCALE_BY_ROUTER",
                            "INT4",
                            "SCALE_PER_TILE",
                            "SCALE_PER_ROW",
                            "HAS_ORDER",
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
                    "INPUT_PER_TOKEN": not scaled,
                    "SCALE_BY_ROUTER": scaled,
                    "INT4": int4,
                    "SCALE_PER_TILE": scales == "tile",
                    "SCALE_PER_ROW": scales == "row",
                    "HAS_ORDER": ordered,
                    "BLOCK_M": 16,
                    "BLOCK_N": 64,
                    "BLOCK_K": block_k,
                    "DOT_DTYPE": tl.bfloat16,
                    "DOT_PRECISION": "tf32",
                },
                {"num_warps": 4, "num_stages": 3},
                targets,
            )
        )
    for activation, windowed in (("*bf16", True), ("*fp32", False)):
        cases.append(
            (
                f"flash prefill {activation} GQA 16/8 head_dim 256, soft-cap, window={windowed}",
                flash_prefill._flash_prefill_kernel,
                {
                    **dict.fromkeys(["query_ptr", "key_ptr", "value_ptr", "output_ptr"], activation),
                    **dict.fromkeys(["cu_seq_q_ptr", "cu_seq_k_ptr"], "*i32"),
                    **dict.fromkeys(
                        [
                            "query_token_stride",
                            "query_head_stride",
                            "key_token_stride",
                            "key_head_stride",
                            "output_token_stride",
                            "output_head_stride",
                            "sliding_window",
                        ],
                        "i32",
                    ),
                    **dict.fromkeys(["query_scale", "softcap"], "fp32"),
                    **dict.fromkeys(
                        [
                            "GROUP",
                            "HEAD_DIM",
                            "BLOCK_DIM",
                            "BLOCK_Q",
                            "BLOCK_K",
                            "WINDOWED",
                            "SOFTCAP",
                            "DOT_DTYPE",
                            "DOT_PRECISION",
                        ],
                        "constexpr",
                    ),
                },
                {
                    "GROUP": 2,
                    "HEAD_DIM": 256,  # Gemma 2's
                    "BLOCK_DIM": 256,
                    "BLOCK_Q": flash_prefill._BLOCK_Q,
                    "BLOCK_K": flash_prefill._BLOCK_K,
                    "WINDOWED": windowed,
                    "SOFTCAP": True,
                    "DOT_DTYPE": tl.bfloat16 if activation == "*bf16" else tl.float32,
                    "DOT_PRECISION": "tf32" if activation == "*bf16" else "ieee",
                },
                {"num_warps": 4, "num_stages": 2},
                capabilities,
            )
        )
    return cases
