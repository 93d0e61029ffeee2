"""Writes a step's new keys and values into the paged KV cache, one launch for all tokens and heads.

The paged layout (shared with ``paged_attention``) is ``key_cache, value_cache: [num_blocks,
block_size, num_kv_heads, head_dim]``; token ``t`` goes to flat slot ``slot_mapping[t] = block *
block_size + offset``. A negative slot skips the token: padded rows of a CUDA-graph batch write
nothing. Eager PyTorch needs an index_put per tensor plus the slot arithmetic; this is one kernel.
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


@triton.jit
def _store_kv_kernel(
    key_ptr,
    value_ptr,
    key_cache_ptr,
    value_cache_ptr,
    slot_mapping_ptr,
    key_token_stride,
    key_head_stride,
    value_token_stride,
    value_head_stride,
    num_kv_heads,
    HEAD_DIM: tl.constexpr,
    BLOCK_HEADS: tl.constexpr,
    BLOCK_DIM: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot >= 0:
        heads = tl.arange(0, BLOCK_HEADS)
        dims = tl.arange(0, BLOCK_DIM)
        mask = (heads[:, None] < num_kv_heads) & (dims[None, :] < HEAD_DIM)
        # the cache is contiguous: a slot's row is num_kv_heads * HEAD_DIM elements
        cache_offsets = slot * num_kv_heads * HEAD_DIM + heads[:, None] * HEAD_DIM + dims[None, :]
        key = tl.load(
            key_ptr + token * key_token_stride + heads[:, None] * key_head_stride + dims[None, :],
            mask=mask,
        )
        value = tl.load(
            value_ptr + token * value_token_stride + heads[:, None] * value_head_stride + dims[None, :],
            mask=mask,
        )
        tl.store(key_cache_ptr + cache_offsets, key, mask=mask)
        tl.store(value_cache_ptr + cache_offsets, value, mask=mask)


def _check(
    op: str,
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    check_dtype(op, "key", key, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(op, {"key": key, "value": value, "key_cache": key_cache, "value_cache": value_cache})
    check_dtype(op, "slot_mapping", slot_mapping, INDEX_DTYPES)
    if key_cache.dim() != 4:
        raise ValueError(
            f"{op}: key_cache must be 4-D [num_blocks, block_size, num_kv_heads, head_dim]; "
            f"got shape {list(key_cache.shape)}"
        )
    _, _, num_kv_heads, head_dim = key_cache.shape
    check_shape(op, "value_cache", value_cache, list(key_cache.shape))
    check_shape(op, "key", key, [None, num_kv_heads, head_dim])
    check_shape(op, "value", value, list(key.shape))
    check_shape(op, "slot_mapping", slot_mapping, [key.shape[0]])
    check_contiguous(op, "key_cache", key_cache)
    check_contiguous(op, "value_cache", value_cache)
    check_inner_contiguous(op, "key", key)
    check_inner_contiguous(op, "value", value)


def store_kv_cache(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """``key``/``value``: [tokens, num_kv_heads, head_dim]; writes them into the caches at ``slot_mapping``.

    Slots must be below ``num_blocks * block_size`` (not bounds-checked: the block manager owns them).
    """
    op = "store_kv_cache"
    _check(op, key, value, key_cache, value_cache, slot_mapping)
    check_launchable(
        _store_kv_kernel,
        op,
        {
            "key": key,
            "value": value,
            "key_cache": key_cache,
            "value_cache": value_cache,
            "slot_mapping": slot_mapping,
        },
    )
    tokens, num_kv_heads, head_dim = key.shape
    if tokens == 0:
        return
    _store_kv_kernel[(tokens,)](
        key,
        value,
        key_cache,
        value_cache,
        slot_mapping,
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        num_kv_heads,
        HEAD_DIM=head_dim,
        BLOCK_HEADS=triton.next_power_of_2(num_kv_heads),
        BLOCK_DIM=triton.next_power_of_2(head_dim),
        num_warps=4,
    )
