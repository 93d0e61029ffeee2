"""Prefill attention with what flash varlen and SDPA do not offer: logit soft-capping (Gemma 2), with
or without a sliding window, over a step's prefill rows gathered into one packed K/V.

Without it a soft-capped layer's prefill would materialise every head's [query, context] score
matrix in the torch reference (gigabytes for a long prompt). This is a flash-attention forward in
Triton: one program per (block of a row's queries, row, query head), an online softmax over the
row's keys in tiles, the causal edge at each query's own position (a row's queries are the last of
its context: a whole prompt, or a chunk over a cached prefix), keys before the window skipped, and
scores capped as ``cap * tanh(s / cap)`` in natural units before the log2-domain softmax.

Layout: ``query`` [tokens, heads, head_dim] (rows packed by ``cu_seq_q``), ``keys``/``values``
[context tokens, kv_heads, head_dim] (rows packed by ``cu_seq_k``), as ``prefill_attention`` gathers
them from the paged cache.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    check_dtype,
    check_inner_contiguous,
    check_launchable,
    check_same_dtype,
    dot_input_precision,
    dot_operand_dtype,
)
from berth_runtime.kernels._rounding import round_to

_BLOCK_Q = 16
_BLOCK_K = 32
_LOG2_E = 1.4426950408889634


@triton.jit
def _flash_prefill_kernel(
    query_ptr,
    key_ptr,
    value_ptr,
    output_ptr,
    cu_seq_q_ptr,
    cu_seq_k_ptr,
    query_token_stride,
    query_head_stride,
    key_token_stride,
    key_head_stride,
    output_token_stride,
    output_head_stride,
    query_scale,
    sliding_window,
    softcap,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_DIM: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_K: tl.constexpr,
    WINDOWED: tl.constexpr,
    SOFTCAP: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    query_block = tl.program_id(0)
    row = tl.program_id(1)
    head = tl.program_id(2)
    query_start = tl.load(cu_seq_q_ptr + row).to(tl.int32)
    query_len = tl.load(cu_seq_q_ptr + row + 1).to(tl.int32) - query_start
    key_start = tl.load(cu_seq_k_ptr + row).to(tl.int32)
    key_len = tl.load(cu_seq_k_ptr + row + 1).to(tl.int32) - key_start
    first_query = query_block * BLOCK_Q
    if first_query < query_len:
        offsets = first_query + tl.arange(0, BLOCK_Q)
        query_mask = offsets < query_len
        positions = key_len - query_len + offsets  # each query's own position in its context
        dims = tl.arange(0, BLOCK_DIM)
        dim_mask = dims < HEAD_DIM
        query = tl.load(
            query_ptr
            + (query_start + offsets)[:, None].to(tl.int64) * query_token_stride
            + head * query_head_stride
            + dims[None, :],
            mask=query_mask[:, None] & dim_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        query = (query * query_scale).to(DOT_DTYPE)
        kv_offset = (head // GROUP) * key_head_stride
        end = tl.minimum(key_len, key_len - query_len + first_query + BLOCK_Q)
        start = 0
        if WINDOWED:
            start = tl.maximum(0, key_len - query_len + first_query - sliding_window + 1)
        running_max = tl.full([BLOCK_Q], float("-inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_Q], tl.float32)
        accumulator = tl.zeros([BLOCK_Q, BLOCK_DIM], tl.float32)
        for tile_start in range(start, end, BLOCK_K):
            keys_at = tile_start + tl.arange(0, BLOCK_K)
            key_mask = keys_at < end
            tile = (key_start + keys_at)[:, None].to(tl.int64) * key_token_stride + kv_offset + dims[None, :]
            kv_mask = key_mask[:, None] & dim_mask[None, :]
            key = tl.load(key_ptr + tile, mask=kv_mask, other=0.0).to(tl.float32).to(DOT_DTYPE)
            value = tl.load(value_ptr + tile, mask=kv_mask, other=0.0).to(tl.float32).to(DOT_DTYPE)
            scores = tl.dot(query, tl.trans(key), input_precision=DOT_PRECISION)  # [BLOCK_Q, BLOCK_K]
            if SOFTCAP:  # cap * tanh(s / cap), tanh(x) = 1 - 2 / (exp(2x) + 1), then to log2 units
                scores = (1.0 - 2.0 / (tl.exp(scores * (2.0 / softcap)) + 1.0)) * (
                    softcap * 1.4426950408889634
                )
            visible = key_mask[None, :] & (keys_at[None, :] <= positions[:, None])
            if WINDOWED:
                visible = visible & (keys_at[None, :] > positions[:, None] - sliding_window)
            scores = tl.where(visible, scores, float("-inf"))
            new_max = tl.maximum(running_max, tl.max(scores, axis=1))
            safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)  # a query with no key here yet
            probabilities = tl.exp2(scores - safe_max[:, None])
            correction = tl.exp2(running_max - safe_max)
            running_sum = running_sum * correction + tl.sum(probabilities, axis=1)
            accumulator = accumulator * correction[:, None] + tl.dot(
                probabilities.to(DOT_DTYPE), value, input_precision=DOT_PRECISION
            )
            running_max = new_max
        result = accumulator / tl.where(running_sum > 0.0, running_sum, 1.0)[:, None]
        tl.store(
            output_ptr
            + (query_start + offsets)[:, None].to(tl.int64) * output_token_stride
            + head * output_head_stride
            + dims[None, :],
            round_to(result, output_ptr.dtype.element_ty),
            mask=query_mask[:, None] & dim_mask[None, :],
        )


def flash_prefill_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_query_len: int,
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """Causal attention of each packed row's queries over its packed context. ``query``: [tokens,
    heads, head_dim]; ``keys``, ``values``: [context tokens, kv_heads, head_dim]; ``cu_seq_q``,
    ``cu_seq_k``: [rows + 1] offsets (int32/int64); ``max_query_len`` bounds the rows' query counts
    (a host int). Returns [tokens, heads, head_dim] in the query dtype."""
    op = "flash_prefill_attention"
    check_dtype(op, "query", query, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(op, {"query": query, "keys": keys, "values": values})
    if query.dim() != 3 or keys.dim() != 3 or keys.shape != values.shape or keys.shape[2] != query.shape[2]:
        raise ValueError(
            f"{op}: query must be [tokens, heads, head_dim] and keys, values [context, kv_heads, head_dim] "
            f"of the same head_dim; got {list(query.shape)}, {list(keys.shape)}, {list(values.shape)}"
        )
    if query.shape[1] % keys.shape[1]:
        raise ValueError(f"{op}: query heads {query.shape[1]} must be a multiple of KV heads {keys.shape[1]}")
    if cu_seq_q.shape != cu_seq_k.shape or cu_seq_q.dim() != 1:
        raise ValueError(
            f"{op}: cu_seq_q and cu_seq_k must be [rows + 1]; got "
            f"{list(cu_seq_q.shape)} and {list(cu_seq_k.shape)}"
        )
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"{op}: sliding_window must be >= 1 or None; got {sliding_window}")
    if logit_softcap is not None and not logit_softcap > 0:
        raise ValueError(f"{op}: logit_softcap must be > 0 or None; got {logit_softcap}")
    for name, tensor in (("query", query), ("keys", keys), ("values", values)):
        check_inner_contiguous(op, name, tensor)
    if keys.stride() != values.stride():
        raise ValueError(
            f"{op}: keys and values must share strides; got {keys.stride()} and {values.stride()}"
        )
    tensors = {"query": query, "keys": keys, "values": values, "cu_seq_q": cu_seq_q, "cu_seq_k": cu_seq_k}
    check_launchable(_flash_prefill_kernel, op, tensors)
    output = torch.empty_like(query)
    rows = cu_seq_q.shape[0] - 1
    if rows == 0 or query.shape[0] == 0:
        return output
    dot_dtype = dot_operand_dtype(_flash_prefill_kernel, query.dtype)
    head_dim = query.shape[2]
    grid = (triton.cdiv(max_query_len, _BLOCK_Q), rows, query.shape[1])
    _flash_prefill_kernel[grid](
        query,
        keys,
        values,
        output,
        cu_seq_q,
        cu_seq_k,
        query.stride(0),
        query.stride(1),
        keys.stride(0),
        keys.stride(1),
        output.stride(0),
        output.stride(1),
        scale if logit_softcap is not None else scale * _LOG2_E,
        sliding_window or 0,
        logit_softcap or 1.0,
        GROUP=query.shape[1] // keys.shape[1],
        HEAD_DIM=head_dim,
        BLOCK_DIM=max(16, triton.next_power_of_2(head_dim)),
        BLOCK_Q=_BLOCK_Q,
        BLOCK_K=_BLOCK_K,
        WINDOWED=sliding_window is not None,
        SOFTCAP=logit_softcap is not None,
        DOT_DTYPE=dot_dtype,
        DOT_PRECISION=dot_input_precision(dot_dtype),
        num_warps=4,
        num_stages=2,
    )
    return output
