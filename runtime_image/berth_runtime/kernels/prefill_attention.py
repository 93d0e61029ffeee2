"""Prefill (and chunked-prefill) attention over the paged KV cache, through PyTorch's SDPA.

Why SDPA and not a Triton kernel: prefill is compute-bound, and on Hopper SDPA dispatches to the
FlashAttention-2 / cuDNN kernels, already near the tensor-core limit; a hand-written Triton kernel
would at best match them. Attention is also a small share of prefill FLOPs (for the 8B shape at
2,048 tokens about 3% of the GEMMs' 2·params·tokens), so TTFT is decided by the linear layers. The
only paged-specific work is a gather of the sequence's blocks into contiguous K/V (one read of the
context, small next to the weights). The mask is ``causal_lower_right``, which is right both for a
whole prompt and for a chunk whose earlier tokens are already cached (prefix caching, chunked
prefill), and which, unlike a dense boolean mask, keeps the flash backends eligible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    INDEX_DTYPES,
    check_dtype,
    check_same_dtype,
    check_shape,
)
from berth_runtime.kernels.paged_attention import gather_sequence_kv


def paged_prefill_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_ids: torch.Tensor,
    context_len: int,
    scale: float,
) -> torch.Tensor:
    """Causal attention of one sequence's chunk over its cache.

    ``query``: [query_len, num_heads, head_dim], the chunk's tokens, which sit at positions
    ``context_len - query_len ... context_len - 1`` and whose K/V are already stored; caches:
    [num_blocks, block_size, num_kv_heads, head_dim]; ``block_ids``: [>= ceil(context_len /
    block_size)] the sequence's blocks. Returns [query_len, num_heads, head_dim].
    """
    op = "paged_prefill_attention"
    check_dtype(op, "query", query, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(op, {"query": query, "key_cache": key_cache, "value_cache": value_cache})
    check_dtype(op, "block_ids", block_ids, INDEX_DTYPES)
    if query.dim() != 3 or key_cache.dim() != 4:
        raise ValueError(
            f"{op}: query must be [query_len, num_heads, head_dim] and key_cache [num_blocks, block_size, "
            f"num_kv_heads, head_dim]; got {list(query.shape)} and {list(key_cache.shape)}"
        )
    query_len, num_heads, head_dim = query.shape
    _, block_size, num_kv_heads, _ = key_cache.shape
    check_shape(op, "key_cache", key_cache, [None, None, None, head_dim])
    check_shape(op, "value_cache", value_cache, list(key_cache.shape))
    if num_heads % num_kv_heads:
        raise ValueError(f"{op}: query heads {num_heads} must be a multiple of KV heads {num_kv_heads}")
    if not query_len <= context_len <= block_ids.shape[0] * block_size:
        raise ValueError(
            f"{op}: context_len {context_len} must be at least query_len {query_len} and at most the "
            f"{block_ids.shape[0]} given blocks * block_size {block_size}"
        )
    keys, values = gather_sequence_kv(key_cache, value_cache, block_ids, context_len)
    # 4-D with a batch of one: the flash / cuDNN backends take only 4-D inputs, and 3-D ones fall
    # back to the math backend, which materialises every head's [query_len, context_len] scores
    # (measured on an H200: TTFT of 2,048 tokens on the 8B shape 4.1x the compute limit that way).
    attended = F.scaled_dot_product_attention(
        query.transpose(0, 1)[None],  # [1, heads, query_len, head_dim]
        keys.transpose(0, 1)[None],  # [1, kv_heads, context_len, head_dim]
        values.transpose(0, 1)[None],
        attn_mask=causal_lower_right(query_len, context_len),
        scale=scale,
        enable_gqa=num_heads != num_kv_heads,
    )
    return attended[0].transpose(0, 1)


def paged_prefill_attention_reference(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_ids: torch.Tensor,
    context_len: int,
    scale: float,
) -> torch.Tensor:
    """Float32 softmax attention with an explicit position mask, token by token."""
    query_len, num_heads, _ = query.shape
    keys, values = gather_sequence_kv(key_cache, value_cache, block_ids, context_len)
    group = num_heads // key_cache.shape[2]
    keys = keys.float().repeat_interleave(group, dim=1)  # [context_len, heads, head_dim]
    values = values.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", query.float(), keys) * scale
    query_positions = torch.arange(context_len - query_len, context_len)[:, None]
    visible = torch.arange(context_len)[None, :] <= query_positions  # [query_len, context_len]
    scores = scores.masked_fill(~visible.to(scores.device), float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), values).to(query.dtype)
