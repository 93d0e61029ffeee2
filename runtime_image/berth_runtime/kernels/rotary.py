"""Rotary position embedding (GPT-NeoX / Llama "rotate half" style), applied to q and k in place.

One launch rotates the query and key heads of every token at their positions, reading the cos/sin
rows from a cache built once at start-up (so no trigonometry, no host work, and a fixed launch shape
for CUDA graphs). The arithmetic rounds where Hugging Face's ``apply_rotary_pos_emb`` does (cos/sin
rounded to the activation dtype, each product rounded, then the sum), keeping greedy outputs equal.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    INDEX_DTYPES,
    check_dtype,
    check_inner_contiguous,
    check_launchable,
    check_same_dtype,
    check_shape,
)
from berth_runtime.kernels._rounding import round_to


@triton.jit
def rotate_heads(
    source_ptr,
    source_head_stride,
    destination_ptr,
    destination_head_stride,
    num_heads,
    num_heads_to_store,
    cos,
    sin,
    HALF: tl.constexpr,
    BLOCK_HEADS: tl.constexpr,
):
    """Rotates the first 2 * HALF dims of ``num_heads`` heads read at ``source_ptr`` (one token) and
    writes the first ``num_heads_to_store`` of them (all, or 0 to skip) at ``destination_ptr``."""
    heads = tl.arange(0, BLOCK_HEADS)
    dims = tl.arange(0, HALF)
    mask = heads[:, None] < num_heads
    source = source_ptr + heads[:, None] * source_head_stride + dims[None, :]
    x1 = tl.load(source, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(source + HALF, mask=mask, other=0.0).to(tl.float32)
    dtype = source_ptr.dtype.element_ty
    # out1 = x1*cos - x2*sin ; out2 = x2*cos + x1*sin, each product rounded like eager bf16
    x1_cos = round_to(x1 * cos[None, :], dtype).to(tl.float32)
    x2_sin = round_to(x2 * sin[None, :], dtype).to(tl.float32)
    x2_cos = round_to(x2 * cos[None, :], dtype).to(tl.float32)
    x1_sin = round_to(x1 * sin[None, :], dtype).to(tl.float32)
    destination = destination_ptr + heads[:, None] * destination_head_stride + dims[None, :]
    store = heads[:, None] < num_heads_to_store
    tl.store(destination, round_to(x1_cos - x2_sin, dtype), mask=store)
    tl.store(destination + HALF, round_to(x2_cos + x1_sin, dtype), mask=store)


@triton.jit
def load_cos_sin(
    cos_ptr, sin_ptr, cos_row_stride, sin_row_stride, position, dtype: tl.constexpr, HALF: tl.constexpr
):
    """The first ``HALF`` cos and sin values of table row ``position``, rounded to ``dtype`` (as Hugging
    Face casts the tables to the activation dtype) and widened back to float32 for the arithmetic."""
    # the tables repeat each half (rotate-half layout): the first HALF columns are all we need
    dims = tl.arange(0, HALF)
    cos = round_to(tl.load(cos_ptr + position * cos_row_stride + dims), dtype).to(tl.float32)
    sin = round_to(tl.load(sin_ptr + position * sin_row_stride + dims), dtype).to(tl.float32)
    return cos, sin


@triton.jit
def _rotary_kernel(
    positions_ptr,
    query_ptr,
    key_ptr,
    cos_ptr,
    sin_ptr,
    query_token_stride,
    query_head_stride,
    key_token_stride,
    key_head_stride,
    cos_row_stride,
    sin_row_stride,
    num_query_heads,
    num_key_heads,
    HALF: tl.constexpr,
    BLOCK_QUERY_HEADS: tl.constexpr,
    BLOCK_KEY_HEADS: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    position = tl.load(positions_ptr + token).to(tl.int64)
    cos, sin = load_cos_sin(
        cos_ptr, sin_ptr, cos_row_stride, sin_row_stride, position, query_ptr.dtype.element_ty, HALF
    )
    query_row = query_ptr + token * query_token_stride
    key_row = key_ptr + token * key_token_stride
    rotate_heads(
        query_row,
        query_head_stride,
        query_row,
        query_head_stride,
        num_query_heads,
        num_query_heads,
        cos,
        sin,
        HALF,
        BLOCK_QUERY_HEADS,
    )
    rotate_heads(
        key_row,
        key_head_stride,
        key_row,
        key_head_stride,
        num_key_heads,
        num_key_heads,
        cos,
        sin,
        HALF,
        BLOCK_KEY_HEADS,
    )


def apply_rotary_embedding(
    query: torch.Tensor,
    key: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotates ``query`` [tokens, q_heads, head_dim] and ``key`` [tokens, kv_heads, head_dim] IN PLACE.

    ``positions``: [tokens] int32/int64; ``cos_table``/``sin_table``: [max_positions, rotary_dim]
    float32 with both halves equal (``berth_runtime.models.rope.cos_sin_table``'s layout). The first
    ``rotary_dim`` dimensions of each head are rotated (all of them for Llama). Positions must lie in
    ``[0, max_positions)``; the kernel does not bounds-check them. Returns ``(query, key)`` so it can
    stand in for ``torch_reference.apply_rotary``.
    """
    op = "apply_rotary_embedding"
    check_dtype(op, "query", query, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(op, {"query": query, "key": key})
    check_dtype(op, "positions", positions, INDEX_DTYPES)
    check_dtype(op, "cos_table", cos_table, (torch.float32,))
    check_dtype(op, "sin_table", sin_table, (torch.float32,))
    if query.dim() != 3:
        raise ValueError(f"{op}: query must be 3-D [tokens, heads, head_dim]; got shape {list(query.shape)}")
    tokens, num_query_heads, head_dim = query.shape
    check_shape(op, "key", key, [tokens, None, head_dim])
    check_shape(op, "positions", positions, [tokens])
    if cos_table.dim() != 2:
        raise ValueError(f"{op}: cos_table must be 2-D; got shape {list(cos_table.shape)}")
    check_shape(op, "sin_table", sin_table, list(cos_table.shape))
    rotary_dim = cos_table.shape[1]
    half = rotary_dim // 2
    if rotary_dim % 2 or rotary_dim > head_dim or half & (half - 1):
        raise ValueError(
            f"{op}: the tables' rotary_dim {rotary_dim} must be even, at most head_dim {head_dim}, "
            "and half of it a power of two"
        )
    for name, tensor in (("query", query), ("key", key), ("cos_table", cos_table), ("sin_table", sin_table)):
        check_inner_contiguous(op, name, tensor)
    tensors = {
        "positions": positions,
        "query": query,
        "key": key,
        "cos_table": cos_table,
        "sin_table": sin_table,
    }
    check_launchable(_rotary_kernel, op, tensors)
    if tokens == 0:
        return query, key
    num_key_heads = key.shape[1]
    _rotary_kernel[(tokens,)](
        positions,
        query,
        key,
        cos_table,
        sin_table,
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        cos_table.stride(0),
        sin_table.stride(0),
        num_query_heads,
        num_key_heads,
        HALF=half,
        BLOCK_QUERY_HEADS=triton.next_power_of_2(num_query_heads),
        BLOCK_KEY_HEADS=triton.next_power_of_2(num_key_heads),
        num_warps=4,
    )
    return query, key
