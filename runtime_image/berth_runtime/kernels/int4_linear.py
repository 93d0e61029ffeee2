"""Int4 weight-only linear layer as AWQ and GPTQ checkpoints store it: 4-bit weights, one scale and
one zero point per group of ``group_size`` inputs per output row, dequantized in registers.

Decode reads every weight once per step, so 4-bit weights read a quarter of bf16's bytes. The layout
(berth's, converted once at load from either format by ``models.prequantized``) is output-major so
fused q/k/v and gate/up concatenate rows, as every other linear here does:

- ``qweight``: int32 [out, in / 8]; nibble j (bits 4j..4j+3) of word w is input 8w + j;
- ``scale``: float16 [out, groups]; ``zero``: uint8 [out, groups]; ``w = (q - zero) * scale``;
- GPTQ act-order checkpoints are permuted at load so each group's inputs are contiguous, and the
  caller gathers the activations in the same order (``quantization.Int4Linear``).

Each K tile lies inside one group (``BLOCK_K`` divides ``group_size``), so the kernel widens
``q - zero`` (an integer in [-16, 15], exact in bf16/fp16) to the activation dtype, runs the dot in
fp32 and applies the group's scale to the tile's partial sum: ``acc += dot(x, q - z) * s``.
Two variants share the code: a tensor-core tile (``tl.dot``, ``BLOCK_M >= 16``) for prefill and
batches, and a CUDA-core GEMV (broadcast multiply and sum, ``BLOCK_M`` = the rows rounded up to a
power of two, no padding to 16) for a few decode rows. Which wins at batch 1 on a given card is for
``bench/kernels.py`` to say; the int8 kernel's padded tile won on an H200 (docs/gpu-results.md).
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

GEMV_MAX_ROWS = 4
"""Up to this many rows take the CUDA-core GEMV variant by default."""


@triton.jit
def _int4_matmul_kernel(
    input_ptr,
    qweight_ptr,
    scale_ptr,
    zero_ptr,
    bias_ptr,
    output_ptr,
    rows,
    out_features,
    in_features,
    groups,
    group_size,
    input_row_stride,
    output_row_stride,
    HAS_BIAS: tl.constexpr,
    USE_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    row_ids = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    col_ids = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_ids = tl.arange(0, BLOCK_K)
    row_mask = row_ids < rows
    col_mask = col_ids < out_features
    words_per_row = in_features // 8
    input_tile = input_ptr + row_ids[:, None].to(tl.int64) * input_row_stride + k_ids[None, :]
    # a [BLOCK_K, BLOCK_N] tile of the transposed weight: each int32 word is read for its 8 inputs
    word_tile = qweight_ptr + col_ids[None, :].to(tl.int64) * words_per_row + (k_ids // 8)[:, None]
    shifts = ((k_ids % 8) * 4)[:, None]
    group_row = col_ids.to(tl.int64) * groups
    accumulator = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k_start in range(0, in_features, BLOCK_K):
        k_mask = k_ids < in_features - k_start
        group = k_start // group_size
        scale = tl.load(scale_ptr + group_row + group, mask=col_mask, other=0.0).to(tl.float32)
        zero = tl.load(zero_ptr + group_row + group, mask=col_mask, other=0).to(tl.int32)
        words = tl.load(word_tile, mask=k_mask[:, None] & col_mask[None, :], other=0)
        centred = ((words >> shifts) & 0xF) - zero[None, :]  # [BLOCK_K, BLOCK_N], in [-16, 15]
        activations = tl.load(input_tile, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        if USE_DOT:
            partial = tl.dot(
                activations.to(tl.float32).to(DOT_DTYPE),
                centred.to(tl.float32).to(DOT_DTYPE),
                input_precision=DOT_PRECISION,
            )
        else:  # [BLOCK_M, BLOCK_K, 1] * [1, BLOCK_K, BLOCK_N], summed over K
            partial = tl.sum(
                activations.to(tl.float32)[:, :, None] * centred.to(tl.float32)[None, :, :], axis=1
            )
        accumulator += partial * scale[None, :]
        input_tile += BLOCK_K
        word_tile += BLOCK_K // 8
    if HAS_BIAS:
        accumulator += tl.load(bias_ptr + col_ids, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(
        output_ptr + row_ids[:, None].to(tl.int64) * output_row_stride + col_ids[None, :],
        round_to(accumulator, output_ptr.dtype.element_ty),
        mask=row_mask[:, None] & col_mask[None, :],
    )


TileSizes = tuple[int, int, int, int]
"""(BLOCK_M, BLOCK_N, BLOCK_K, num_warps); BLOCK_M < 16 selects the CUDA-core GEMV variant."""


def default_tile_sizes(rows: int, group_size: int) -> TileSizes:
    """GEMV for a few rows, skinny tensor-core tiles for decode batches, square ones for prefill;
    ``BLOCK_K`` is capped by the largest power of two dividing ``group_size`` (a tile in one group).
    Untuned: the int8 kernel's H200 winners, to be swept by ``bench/kernels.py`` on a GPU."""
    group_block = group_size & -group_size
    if rows <= GEMV_MAX_ROWS:
        return triton.next_power_of_2(rows), 32, min(128, group_block), 4
    if rows <= 16:
        return 16, 32, min(128, group_block), 4
    if rows <= 64:
        return 64, 64, min(64, group_block), 4
    return 128, 128, min(64, group_block), 8


def _check(
    op: str,
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bias: torch.Tensor | None,
) -> int:
    """Validates the arguments; returns the group size."""
    check_dtype(op, "x", x, FLOAT_ACTIVATION_DTYPES)
    check_dtype(op, "qweight", qweight, (torch.int32,))
    check_dtype(op, "scale", scale, (torch.float16, torch.bfloat16, torch.float32))
    check_dtype(op, "zero", zero, (torch.uint8,))
    if x.dim() != 2 or qweight.dim() != 2 or scale.dim() != 2:
        raise ValueError(
            f"{op}: x must be [rows, in_features], qweight [out_features, in_features / 8] and scale "
            f"[out_features, groups]; got {list(x.shape)}, {list(qweight.shape)} and {list(scale.shape)}"
        )
    out_features, words = qweight.shape
    in_features, groups = x.shape[1], scale.shape[1]
    if words * 8 != in_features:
        raise ValueError(f"{op}: x has {in_features} input features; qweight packs {words * 8}")
    if groups < 1 or in_features % groups:
        raise ValueError(f"{op}: {groups} groups do not divide {in_features} input features evenly")
    group_size = in_features // groups
    if group_size % 16:
        raise ValueError(f"{op}: group size {group_size} must be a multiple of 16 (one K tile per group)")
    check_shape(op, "scale", scale, [out_features, groups])
    check_shape(op, "zero", zero, [out_features, groups])
    check_inner_contiguous(op, "x", x)
    for name, tensor in (("qweight", qweight), ("scale", scale), ("zero", zero)):
        check_contiguous(op, name, tensor)
    if bias is not None:
        check_shape(op, "bias", bias, [out_features])
        check_dtype(op, "bias", bias, (x.dtype, torch.float32))
        check_contiguous(op, "bias", bias)
    return group_size


def int4_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bias: torch.Tensor | None = None,
    tile_sizes: TileSizes | None = None,
) -> torch.Tensor:
    """``x``: [rows, in_features] (already in the weight's input order); ``qweight``: int32
    [out_features, in_features / 8]; ``scale``: [out_features, groups]; ``zero``: uint8 [out_features,
    groups]; ``bias``: [out_features] or None. Returns [rows, out_features] in ``x``'s dtype.
    ``tile_sizes`` overrides :func:`default_tile_sizes` (for tuning)."""
    op = "int4_linear"
    group_size = _check(op, x, qweight, scale, zero, bias)
    tensors = {"x": x, "qweight": qweight, "scale": scale, "zero": zero}
    if bias is not None:
        tensors["bias"] = bias
    check_launchable(_int4_matmul_kernel, op, tensors)
    rows, in_features = x.shape
    out_features = qweight.shape[0]
    output = torch.empty((rows, out_features), dtype=x.dtype, device=x.device)
    if rows == 0:
        return output
    block_m, block_n, block_k, num_warps = tile_sizes or default_tile_sizes(rows, group_size)
    use_dot = block_m >= 16
    if (
        any(size & (size - 1) for size in (block_m, block_n, block_k))
        or block_k < 16
        or group_size % block_k
        or (use_dot and block_n < 16)
    ):
        raise ValueError(
            f"{op}: tile_sizes {(block_m, block_n, block_k)} must be powers of two with BLOCK_K >= 16 "
            f"dividing the group size {group_size} (and BLOCK_N >= 16 when BLOCK_M >= 16)"
        )
    grid = (triton.cdiv(out_features, block_n), triton.cdiv(rows, block_m))
    dot_dtype = dot_operand_dtype(_int4_matmul_kernel, x.dtype)
    _int4_matmul_kernel[grid](
        x,
        qweight,
        scale,
        zero,
        bias if bias is not None else scale,
        output,
        rows,
        out_features,
        in_features,
        scale.shape[1],
        group_size,
        x.stride(0),
        output.stride(0),
        HAS_BIAS=bias is not None,
        USE_DOT=use_dot,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        DOT_DTYPE=dot_dtype,
        DOT_PRECISION=dot_input_precision(dot_dtype),
        num_warps=num_warps,
        num_stages=4 if use_dot else 2,
    )
    return output
