"""Rotary embedding fused with the KV-cache store: one launch per layer instead of two.

After the q/k/v projection a decoder layer rotates q and k, then writes k and v into the paged
cache. Here each token's program rotates its query heads in place, rotates its key heads straight
into the cache slot (the rotated key is needed nowhere else: attention reads keys from the cache),
and copies its value heads to the cache, so k is read once and written once. Arithmetic and
rounding are those of ``rotary`` (Hugging Face's), slots those of ``kv_cache_store`` (negative =
skip the cache writes, for CUDA-graph padding rows). Needs full-head rotation (rotary_dim ==
head_dim: Llama, Mistral, Qwen2).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    INDEX_DTYPES,
    check_contiguous,
    check_dtype,
    check_inner_contiguous,
    check_launchable,
    check_same_dtype,
    check_shape,
)
from berth_runtime.kernels.rotary import load_cos_sin, rotate_heads


@triton.jit
def _rotary_store_kv_kernel(
    positions_ptr,
    slot_mapping_ptr,
    query_ptr,
    key_ptr,
    value_ptr,
    cos_ptr,
    sin_ptr,
    key_cache_ptr,
    value_cache_ptr,
    query_token_stride,
    query_head_stride,
    key_token_stride,
    key_head_stride,
    value_token_stride,
    value_head_stride,
    cos_row_stride,
    sin_row_stride,
    num_query_heads,
    num_kv_heads,
    HALF: tl.constexpr,
    BLOCK_QUERY_HEADS: tl.constexpr,
    BLOCK_KV_HEADS: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    position = tl.load(positions_ptr + token).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    cos, sin = load_cos_sin(
        cos_ptr, sin_ptr, cos_row_stride, sin_row_stride, position, query_ptr.dtype.element_ty, HALF
    )
    query_row = query_ptr + token * query_token_stride
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
    # the cache is contiguous: a slot holds num_kv_heads * head_dim elements, head_dim = 2 * HALF
    in_cache = slot >= 0
    cache_row = tl.where(in_cache, slot, 0) * num_kv_heads * 2 * HALF
    rotate_heads(
        key_ptr + token * key_token_stride,
        key_head_stride,
        key_cache_ptr + cache_row,
        2 * HALF,
        num_kv_heads,
        tl.where(in_cache, num_kv_heads, 0),
        cos,
        sin,
        HALF,
        BLOCK_KV_HEADS,
    )
    heads = tl.arange(0, BLOCK_KV_HEADS)
    head_dims = tl.arange(0, 2 * HALF)
    mask = heads[:, None] < tl.where(in_cache, num_kv_heads, 0)
    value = tl.load(
        value_ptr + token * value_token_stride + heads[:, None] * value_head_stride + head_dims[None, :],
        mask=mask,
    )
    tl.store(value_cache_ptr + cache_row + heads[:, None] * 2 * HALF + head_dims[None, :], value, mask=mask)


def _check(
    op: str,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    check_dtype(op, "query", query, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(
        op, {"query": query, "key": key, "value": value, "key_cache": key_cache, "value_cache": value_cache}
    )
    check_dtype(op, "positions", positions, INDEX_DTYPES)
    check_dtype(op, "slot_mapping", slot_mapping, INDEX_DTYPES)
    check_dtype(op, "cos_table", cos_table, (torch.float32,))
    check_dtype(op, "sin_table", sin_table, (torch.float32,))
    if query.dim() != 3 or key_cache.dim() != 4:
        raise ValueError(
            f"{op}: query must be [tokens, heads, head_dim] and key_cache [num_blocks, block_size, "
            f"num_kv_heads, head_dim]; got {list(query.shape)} and {list(key_cache.shape)}"
        )
    tokens, _, head_dim = query.shape
    num_kv_heads = key_cache.shape[2]
    check_shape(op, "key_cache", key_cache, [None, None, num_kv_heads, head_dim])
    check_shape(op, "value_cache", value_cache, list(key_cache.shape))
    check_shape(op, "key", key, [tokens, num_kv_heads, head_dim])
    check_shape(op, "value", value, [tokens, num_kv_heads, head_dim])
    check_shape(op, "positions", positions, [tokens])
    check_shape(op, "slot_mapping", slot_mapping, [tokens])
    check_shape(op, "cos_table", cos_table, [None, head_dim])
    check_shape(op, "sin_table", sin_table, list(cos_table.shape))
    if head_dim & (head_dim - 1) or head_dim < 2:
        raise ValueError(f"{op}: head_dim {head_dim} must be a power of two")
    for name, tensor in (("query", query), ("key", key), ("value", value), ("cos_table", cos_table)):
        check_inner_contiguous(op, name, tensor)
    check_inner_contiguous(op, "sin_table", sin_table)
    check_contiguous(op, "key_cache", key_cache)
    check_contiguous(op, "value_cache", value_cache)


def rotary_and_store_kv(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> torch.Tensor:
    """Rotates ``query`` in place and stores rotated keys and the values at ``slot_mapping``.

    ``query`` [tokens, heads, head_dim], ``key``/``value`` [tokens, kv_heads, head_dim] (``key`` is
    left unrotated); tables [max_positions, head_dim] float32 (halves equal); caches [num_blocks,
    block_size, kv_heads, head_dim]. Returns ``query``.
    """
    op = "rotary_and_store_kv"
    _check(op, query, key, value, positions, cos_table, sin_table, key_cache, value_cache, slot_mapping)
    check_launchable(
        _rotary_store_kv_kernel,
        op,
        {
            "query": query,
            "key": key,
            "value": value,
            "positions": positions,
            "cos_table": cos_table,
            "sin_table": sin_table,
            "key_cache": key_cache,
            "value_cache": value_cache,
            "slot_mapping": slot_mapping,
        },
    )
    tokens, num_query_heads, head_dim = query.shape
    if tokens == 0:
        return query
    num_kv_heads = key.shape[1]
    _rotary_store_kv_kernel[(tokens,)](
        positions,
        slot_mapping,
        query,
        key,
        value,
        cos_table,
        sin_table,
        key_cache,
        value_cache,
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        cos_table.stride(0),
        sin_table.stride(0),
        num_query_heads,
        num_kv_heads,
        HALF=head_dim // 2,
        BLOCK_QUERY_HEADS=triton.next_power_of_2(num_query_heads),
        BLOCK_KV_HEADS=triton.next_power_of_2(num_kv_heads),
        num_warps=4,
    )
    return query
