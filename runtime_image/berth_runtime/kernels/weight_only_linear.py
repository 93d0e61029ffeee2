"""Weight-only quantized linear layer: int8 or fp8 (e4m3) weights, per-output-channel or per-block scales.

Decode at small batch is bound by reading the weights, so halving their bytes nearly halves the step
time. The kernel streams the quantized weight tile by tile, widens it to the activation dtype in
registers (exact: |int8| <= 127 and every e4m3 value fit in bf16/fp16), runs the tensor-core dot,
and applies the per-channel scale once per output at the end:
``y[m, n] = scale[n] * sum_k x[m, k] * q[n, k]`` (+ ``bias[n]``).

Block-wise FP8 (transformers' ``fp8`` with ``weight_block_size``, as Qwen3 and DeepSeek ship it) has
one scale per (rows x columns) block of the weight instead, so the scale changes along K: each K tile
lies inside one block column (``BLOCK_K`` divides the block's columns), and its partial dot is scaled
by the tile's block scale of each output row before it is accumulated. The weight is still read once,
as stored; the scales add one [BLOCK_N] load per K tile.

Small decode batches (up to 16 rows) use ``BLOCK_M = 16`` and narrow ``BLOCK_N`` tiles, so even a
2048-wide projection spreads over more than a hundred programs; larger batches use square tiles. A
single row is padded to 16 too: on an H200 (docs/gpu-results.md) the padded tensor-core tile, whose
loop Triton software-pipelines, streamed the weight 2-4x faster than a CUDA-core GEMV without
padding, whose loop it does not. fp8 weights need a GPU whose Triton backend supports
``float8e4nv`` (Hopper, Ada).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    check_contiguous,
    check_dtype,
    check_inner_contiguous,
    check_launchable,
    check_shape,
    dot_input_precision,
    dot_operand_dtype,
)
from berth_runtime.kernels._rounding import round_to

QUANTIZED_WEIGHT_DTYPES = (torch.int8, torch.float8_e4m3fn)


@triton.jit
def _weight_only_matmul_kernel(
    input_ptr,
    weight_ptr,
    scale_ptr,
    bias_ptr,
    output_ptr,
    rows,
    out_features,
    in_features,
    input_row_stride,
    weight_row_stride,
    output_row_stride,
    scale_row_stride,
    scale_block_rows,
    scale_block_columns,
    HAS_BIAS: tl.constexpr,
    BLOCK_SCALES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    row_block = tl.program_id(1)
    col_block = tl.program_id(0)
    row_ids = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    col_ids = col_block * BLOCK_N + tl.arange(0, BLOCK_N)
    k_ids = tl.arange(0, BLOCK_K)
    row_mask = row_ids < rows
    col_mask = col_ids < out_features
    input_tile = input_ptr + row_ids[:, None].to(tl.int64) * input_row_stride + k_ids[None, :]
    # weight is [out_features, in_features]; read a [BLOCK_K, BLOCK_N] tile of its transpose
    weight_tile = weight_ptr + col_ids[None, :].to(tl.int64) * weight_row_stride + k_ids[:, None]
    if BLOCK_SCALES:  # each output column's row of block scales
        block_scales = scale_ptr + (col_ids // scale_block_rows).to(tl.int64) * scale_row_stride
    accumulator = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k_start in range(0, in_features, BLOCK_K):
        k_mask = k_ids < in_features - k_start
        activations = tl.load(input_tile, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        weights = tl.load(weight_tile, mask=k_mask[:, None] & col_mask[None, :], other=0.0)
        partial = tl.dot(
            activations.to(tl.float32).to(DOT_DTYPE),
            weights.to(tl.float32).to(DOT_DTYPE),
            input_precision=DOT_PRECISION,
        )
        if BLOCK_SCALES:  # the K tile lies in one block column: its blocks' scales after the dot
            tile_scale = tl.load(block_scales + k_start // scale_block_columns, mask=col_mask, other=0.0)
            accumulator += partial * tile_scale[None, :]
        else:
            accumulator += partial
        input_tile += BLOCK_K
        weight_tile += BLOCK_K
    # epilogue: each column's scale once (per-channel scales), then the bias, rounded to the output dtype
    if BLOCK_SCALES:
        result = accumulator
    else:
        result = accumulator * tl.load(scale_ptr + col_ids, mask=col_mask, other=0.0)[None, :]
    if HAS_BIAS:
        result += tl.load(bias_ptr + col_ids, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(
        output_ptr + row_ids[:, None].to(tl.int64) * output_row_stride + col_ids[None, :],
        round_to(result, output_ptr.dtype.element_ty),
        mask=row_mask[:, None] & col_mask[None, :],
    )


TileSizes = tuple[int, int, int, int]
"""(BLOCK_M, BLOCK_N, BLOCK_K, num_warps)."""


def default_tile_sizes(rows: int) -> TileSizes:
    """Skinny tiles for decode, square ones for prefill: the winners of bench/kernels.py's sweep on
    an H200 (docs/gpu-results.md)."""
    if rows <= 16:
        return 16, 32, 256, 4
    if rows <= 64:
        return 64, 64, 128, 4
    return 128, 128, 64, 8


def _check(
    op: str,
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    block_size: tuple[int, int] | None,
) -> None:
    check_dtype(op, "x", x, FLOAT_ACTIVATION_DTYPES)
    check_dtype(op, "qweight", qweight, QUANTIZED_WEIGHT_DTYPES)
    check_dtype(op, "scale", scale, (torch.float32,))
    if x.dim() != 2 or qweight.dim() != 2:
        raise ValueError(
            f"{op}: x must be 2-D [rows, in_features] and qweight 2-D [out_features, in_features]; "
            f"got {list(x.shape)} and {list(qweight.shape)}"
        )
    out_features, in_features = qweight.shape
    if x.shape[1] != in_features:
        raise ValueError(f"{op}: x has {x.shape[1]} input features; qweight expects {in_features}")
    if block_size is None:
        check_shape(op, "scale", scale, [out_features])
    else:
        rows, columns = block_size
        check_dtype(op, "qweight", qweight, (torch.float8_e4m3fn,))
        if rows < 1 or columns < 16 or columns % 16:
            raise ValueError(
                f"{op}: block_size {block_size} needs rows >= 1 and a multiple of 16 columns (a K tile, "
                "at least 16 wide, must lie inside one block)"
            )
        check_shape(op, "scale", scale, [-(-out_features // rows), -(-in_features // columns)])
    check_inner_contiguous(op, "x", x)
    check_inner_contiguous(op, "qweight", qweight)
    check_contiguous(op, "scale", scale)
    if bias is not None:
        check_shape(op, "bias", bias, [out_features])
        check_dtype(op, "bias", bias, (x.dtype, torch.float32))
        check_contiguous(op, "bias", bias)


def weight_only_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    tile_sizes: TileSizes | None = None,
    block_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``x``: [rows, in_features]; ``qweight``: [out_features, in_features] int8 or float8_e4m3fn;
    ``scale``: [out_features] float32, or with ``block_size`` (rows, columns; float8 only)
    [ceil(out_features / rows), ceil(in_features / columns)] float32 block scales; ``bias``:
    [out_features] or None. Returns [rows, out_features] in ``x``'s dtype. ``tile_sizes`` overrides
    :func:`default_tile_sizes` (for tuning); with blocks, BLOCK_K is capped to a divisor of the block's
    columns.
    """
    op = "weight_only_linear"
    _check(op, x, qweight, scale, bias, block_size)
    tensors = {"x": x, "qweight": qweight, "scale": scale}
    if bias is not None:
        tensors["bias"] = bias
    check_launchable(_weight_only_matmul_kernel, op, tensors)
    rows, in_features = x.shape
    out_features = qweight.shape[0]
    output = torch.empty((rows, out_features), dtype=x.dtype, device=x.device)
    if rows == 0:
        return output
    block_m, block_n, block_k, num_warps = tile_sizes or default_tile_sizes(rows)
    if block_size is not None:  # a K tile inside one block column
        block_k = min(block_k, block_size[1] & -block_size[1])
    if min(block_m, block_n, block_k) < 16 or any(size & (size - 1) for size in (block_m, block_n, block_k)):
        raise ValueError(
            f"{op}: tile_sizes {tile_sizes} must be powers of two, BLOCK_M, BLOCK_N and BLOCK_K >= 16 "
            "(the tensor-core dot's smallest tile)"
        )
    grid = (triton.cdiv(out_features, block_n), triton.cdiv(rows, block_m))
    dot_dtype = dot_operand_dtype(_weight_only_matmul_kernel, x.dtype)
    _weight_only_matmul_kernel[grid](
        x,
        qweight,
        scale,
        bias if bias is not None else scale,
        output,
        rows,
        out_features,
        in_features,
        x.stride(0),
        qweight.stride(0),
        output.stride(0),
        scale.stride(0) if block_size is not None else 0,
        block_size[0] if block_size is not None else 1,
        block_size[1] if block_size is not None else 1,
        HAS_BIAS=bias is not None,
        BLOCK_SCALES=block_size is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        DOT_DTYPE=dot_dtype,
        DOT_PRECISION=dot_input_precision(dot_dtype),
        num_warps=num_warps,
        num_stages=4,
    )
    return output
