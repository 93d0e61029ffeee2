"""The weight-only product for decode-sized batches (1-8 rows) on CUDA cores, without tensor cores.

With one to a few rows a tensor-core tile (16 rows at least) is mostly padding, and its operands
pass through shared memory. Here each program loads a [BLOCK_N, BLOCK_K] slab of the quantized
weight straight into registers with wide loads, widens it, and multiplies-and-adds it with the
rows' activations: all that matters at this size is streaming the weight at full bandwidth. Same
contract and scaling as ``weight_only_linear`` (which picks this kernel when ``BLOCK_M < 16``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from berth_runtime.kernels._rounding import round_to


@triton.jit
def store_scaled_output(
    accumulator,
    scale_ptr,
    bias_ptr,
    output_ptr,
    output_row_stride,
    row_ids,
    col_ids,
    row_mask,
    col_mask,
    HAS_BIAS: tl.constexpr,
):
    """The epilogue both weight-only kernels share: ``accumulator`` [rows, cols] float32 times each
    column's scale, plus the bias, rounded to the output dtype and stored at the tile's rows/cols."""
    scale = tl.load(scale_ptr + col_ids, mask=col_mask, other=0.0)
    result = accumulator * scale[None, :]
    if HAS_BIAS:
        result += tl.load(bias_ptr + col_ids, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(
        output_ptr + row_ids[:, None].to(tl.int64) * output_row_stride + col_ids[None, :],
        round_to(result, output_ptr.dtype.element_ty),
        mask=row_mask[:, None] & col_mask[None, :],
    )


@triton.jit
def weight_only_gemv_kernel(
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
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    col_block = tl.program_id(0)
    row_block = tl.program_id(1)
    row_ids = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    col_ids = col_block * BLOCK_N + tl.arange(0, BLOCK_N)
    k_ids = tl.arange(0, BLOCK_K)
    row_mask = row_ids < rows
    col_mask = col_ids < out_features
    input_rows = input_ptr + row_ids[:, None].to(tl.int64) * input_row_stride + k_ids[None, :]
    weight_rows = weight_ptr + col_ids[:, None].to(tl.int64) * weight_row_stride + k_ids[None, :]
    accumulator = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k_start in range(0, in_features, BLOCK_K):
        k_mask = k_ids < in_features - k_start
        # activations: [BLOCK_M, BLOCK_K]; weights: [BLOCK_N, BLOCK_K]
        activations = tl.load(input_rows + k_start, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        weights = tl.load(weight_rows + k_start, mask=col_mask[:, None] & k_mask[None, :], other=0.0)
        products = activations.to(tl.float32)[:, None, :] * weights.to(tl.float32)[None, :, :]
        accumulator += tl.sum(products, axis=2)
    store_scaled_output(
        accumulator,
        scale_ptr,
        bias_ptr,
        output_ptr,
        output_row_stride,
        row_ids,
        col_ids,
        row_mask,
        col_mask,
        HAS_BIAS,
    )
