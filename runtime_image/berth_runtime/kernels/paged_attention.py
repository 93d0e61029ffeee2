"""Decode attention over the paged KV cache: one new query token per sequence, GQA, variable lengths.

Each program owns one (sequence, KV head) pair and computes every query head of that GQA group at
once, so each KV block is read from HBM exactly once per step. Long contexts are split into
partitions of ``PARTITION_TOKENS`` processed by separate programs ("flash-decoding"), whose partial
softmax states a second small kernel merges; at batch 1 this is what keeps all SMs streaming the
cache. The number of partitions depends only on ``max_context_len`` (a host integer), never on
device data, so a step can be captured in a CUDA graph with ``max_context_len = max_model_len``.
What each program and the merge touch follows the sequence's own length, read on the device: a
partition past the context (or wholly before a sliding window) returns before writing its partial
state, and the merge reads only the partitions that hold keys. A graph captured at 128k tokens
(256 partitions) would otherwise write and re-read fp32 partials for every one of them every step —
about 268 MB per layer at 64 sequences of an 8B model — whatever the sequences' real lengths.

Layout (shared with ``kv_cache_store``): ``key_cache, value_cache: [num_blocks, block_size,
num_kv_heads, head_dim]``; ``block_tables[s, i]`` is the physical block holding tokens ``i *
block_size ... (i + 1) * block_size - 1`` of sequence ``s``.

Gemma's layers pass a sliding window (each program starts at the window's first key, so partitions
before it read nothing) and a logit soft-cap (``cap * tanh(s / cap)`` on natural-unit scores, then
the log2-domain softmax), as the torch reference masks and caps them.
"""

from __future__ import annotations

import math

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
    dot_input_precision,
    dot_operand_dtype,
)
from berth_runtime.kernels._rounding import round_to

PARTITION_TOKENS = 512
_TILE_TOKENS = 32
_MERGE_CHUNK = 8
_LOG2_E = 1.4426950408889634


@triton.jit
def _paged_decode_kernel(
    query_ptr,
    key_cache_ptr,
    value_cache_ptr,
    block_tables_ptr,
    context_lens_ptr,
    output_ptr,
    partial_out_ptr,
    partial_max_ptr,
    partial_sum_ptr,
    query_seq_stride,
    query_head_stride,
    output_seq_stride,
    output_head_stride,
    block_table_stride,
    context_lens_stride,
    num_kv_heads,
    block_size,
    num_partitions,
    query_scale,
    sliding_window,
    softcap,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_GROUP: tl.constexpr,
    BLOCK_DIM: tl.constexpr,
    TILE: tl.constexpr,
    PARTITION: tl.constexpr,
    SPLIT: tl.constexpr,
    WINDOWED: tl.constexpr,
    SOFTCAP: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    seq = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    partition = tl.program_id(2)
    context_len = tl.load(context_lens_ptr + seq * context_lens_stride).to(tl.int32)
    start = partition * PARTITION
    end = tl.minimum(start + PARTITION, context_len)
    if WINDOWED:  # the last sliding_window keys only; a partition wholly before them stays empty
        start = tl.maximum(start, context_len - sliding_window)
    if SPLIT and start >= end:  # no keys here: the merge does not read this partition's state
        return

    groups = tl.arange(0, BLOCK_GROUP)
    dims = tl.arange(0, BLOCK_DIM)
    heads = kv_head * GROUP + groups
    group_mask = groups < GROUP
    dim_mask = dims < HEAD_DIM
    # q: [BLOCK_GROUP, BLOCK_DIM], the query heads that share this KV head
    query = tl.load(
        query_ptr + seq * query_seq_stride + heads[:, None] * query_head_stride + dims[None, :],
        mask=group_mask[:, None] & dim_mask[None, :],
        other=0.0,
    ).to(tl.float32)
    # scale (and log2(e) unless soft-capping, which caps natural-unit scores first) folded into q
    query = (query * query_scale).to(DOT_DTYPE)

    running_max = tl.full([BLOCK_GROUP], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_GROUP], tl.float32)
    accumulator = tl.zeros([BLOCK_GROUP, BLOCK_DIM], tl.float32)
    slot_stride = num_kv_heads * HEAD_DIM
    for tile_start in range(start, end, TILE):
        tokens = tile_start + tl.arange(0, TILE)
        token_mask = tokens < end
        blocks = tl.load(
            block_tables_ptr + seq * block_table_stride + tokens // block_size,
            mask=token_mask,
            other=0,
        )
        slots = blocks.to(tl.int64) * block_size + tokens % block_size
        # k, v: [TILE, BLOCK_DIM]
        offsets = slots[:, None] * slot_stride + kv_head * HEAD_DIM + dims[None, :]
        kv_mask = token_mask[:, None] & dim_mask[None, :]
        key = tl.load(key_cache_ptr + offsets, mask=kv_mask, other=0.0).to(tl.float32).to(DOT_DTYPE)
        value = tl.load(value_cache_ptr + offsets, mask=kv_mask, other=0.0).to(tl.float32).to(DOT_DTYPE)
        scores = tl.dot(
            query, tl.trans(key), input_precision=DOT_PRECISION
        )  # [BLOCK_GROUP, TILE], log2 units (natural units when soft-capping)
        if SOFTCAP:  # cap * tanh(s / cap), tanh(x) = 1 - 2 / (exp(2x) + 1), then to log2 units
            scores = (1.0 - 2.0 / (tl.exp(scores * (2.0 / softcap)) + 1.0)) * (softcap * 1.4426950408889634)
        scores = tl.where(token_mask[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=1))
        correction = tl.exp2(running_max - new_max)
        probabilities = tl.exp2(scores - new_max[:, None])
        running_sum = running_sum * correction + tl.sum(probabilities, axis=1)
        accumulator = accumulator * correction[:, None] + tl.dot(
            probabilities.to(DOT_DTYPE), value, input_precision=DOT_PRECISION
        )
        running_max = new_max

    out_mask = group_mask[:, None] & dim_mask[None, :]
    if SPLIT:
        # partial_*: [num_seqs, num_query_heads, num_partitions(, BLOCK_DIM)], merged by _merge_kernel
        state = (seq * num_kv_heads * GROUP + heads) * num_partitions + partition
        tl.store(partial_max_ptr + state, running_max, mask=group_mask)
        tl.store(partial_sum_ptr + state, running_sum, mask=group_mask)
        tl.store(partial_out_ptr + state[:, None] * BLOCK_DIM + dims[None, :], accumulator, mask=out_mask)
    else:
        safe_sum = tl.where(running_sum > 0.0, running_sum, 1.0)
        result = accumulator / safe_sum[:, None]
        tl.store(
            output_ptr + seq * output_seq_stride + heads[:, None] * output_head_stride + dims[None, :],
            round_to(result, output_ptr.dtype.element_ty),
            mask=out_mask,
        )


@triton.jit
def _merge_kernel(
    output_ptr,
    partial_out_ptr,
    partial_max_ptr,
    partial_sum_ptr,
    context_lens_ptr,
    output_seq_stride,
    output_head_stride,
    context_lens_stride,
    num_query_heads,
    num_partitions,
    sliding_window,
    HEAD_DIM: tl.constexpr,
    BLOCK_DIM: tl.constexpr,
    BLOCK_PARTITIONS: tl.constexpr,
    CHUNK: tl.constexpr,
    PARTITION: tl.constexpr,
    WINDOWED: tl.constexpr,
):
    seq = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    first_state = (seq * num_query_heads + head) * num_partitions
    # the partitions that hold keys, as the decode kernel bounds them; the others wrote nothing
    context_len = tl.load(context_lens_ptr + seq * context_lens_stride).to(tl.int32)
    live_end = tl.minimum(tl.cdiv(context_len, PARTITION), num_partitions)
    live_start = 0
    if WINDOWED:
        live_start = tl.maximum(context_len - sliding_window, 0) // PARTITION
    parts = tl.arange(0, BLOCK_PARTITIONS)
    part_mask = (parts >= live_start) & (parts < live_end)
    maxima = tl.load(partial_max_ptr + first_state + parts, mask=part_mask, other=float("-inf"))
    sums = tl.load(partial_sum_ptr + first_state + parts, mask=part_mask, other=0.0)
    overall_max = tl.max(maxima, axis=0)
    total = tl.sum(tl.where(sums > 0.0, sums * tl.exp2(maxima - overall_max), 0.0), axis=0)
    dims = tl.arange(0, BLOCK_DIM)
    merged = tl.zeros([BLOCK_DIM], tl.float32)
    # the partial outputs, CHUNK partitions at a time: [CHUNK, BLOCK_DIM] stays in registers
    for chunk_start in range(live_start, live_end, CHUNK):
        chunk = chunk_start + tl.arange(0, CHUNK)
        chunk_mask = chunk < live_end
        chunk_max = tl.load(partial_max_ptr + first_state + chunk, mask=chunk_mask, other=float("-inf"))
        chunk_sum = tl.load(partial_sum_ptr + first_state + chunk, mask=chunk_mask, other=0.0)
        weights = tl.where(chunk_sum > 0.0, tl.exp2(chunk_max - overall_max), 0.0)
        partials = tl.load(
            partial_out_ptr + (first_state + chunk)[:, None] * BLOCK_DIM + dims[None, :],
            mask=chunk_mask[:, None],
            other=0.0,
        )
        merged += tl.sum(partials * weights[:, None], axis=0)
    merged = merged / tl.where(total > 0.0, total, 1.0)
    tl.store(
        output_ptr + seq * output_seq_stride + head * output_head_stride + dims,
        round_to(merged, output_ptr.dtype.element_ty),
        mask=dims < HEAD_DIM,
    )


def _check(
    op: str,
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> None:
    check_dtype(op, "query", query, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(op, {"query": query, "key_cache": key_cache, "value_cache": value_cache})
    check_dtype(op, "block_tables", block_tables, INDEX_DTYPES)
    check_dtype(op, "context_lens", context_lens, INDEX_DTYPES)
    if query.dim() != 3:
        raise ValueError(
            f"{op}: query must be 3-D [num_seqs, num_heads, head_dim]; got shape {list(query.shape)}"
        )
    if key_cache.dim() != 4:
        raise ValueError(
            f"{op}: key_cache must be 4-D [num_blocks, block_size, num_kv_heads, head_dim]; "
            f"got shape {list(key_cache.shape)}"
        )
    num_seqs, num_heads, head_dim = query.shape
    _, _, num_kv_heads, cache_head_dim = key_cache.shape
    if cache_head_dim != head_dim:
        raise ValueError(f"{op}: key_cache head_dim {cache_head_dim} differs from query head_dim {head_dim}")
    if num_heads % num_kv_heads:
        raise ValueError(
            f"{op}: query heads {num_heads} must be a multiple of the cache's KV heads {num_kv_heads}"
        )
    check_shape(op, "value_cache", value_cache, list(key_cache.shape))
    check_shape(op, "block_tables", block_tables, [num_seqs, None])
    check_shape(op, "context_lens", context_lens, [num_seqs])
    check_contiguous(op, "key_cache", key_cache)
    check_contiguous(op, "value_cache", value_cache)
    check_inner_contiguous(op, "query", query)
    check_inner_contiguous(op, "block_tables", block_tables)


def paged_attention_decode(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    max_context_len: int | None = None,
    out: torch.Tensor | None = None,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """Attention of each sequence's one query token over its first ``context_lens[s]`` cached tokens.

    ``query``: [num_seqs, num_heads, head_dim]; caches: [num_blocks, block_size, num_kv_heads, head_dim];
    ``block_tables``: [num_seqs, max_blocks_per_seq] and ``context_lens``: [num_seqs], int32 or int64 (the
    current token included: its K/V must already be stored). A sequence with context length 0 (a
    padding row) gets zeros. ``max_context_len`` bounds ``context_lens`` and fixes the partition count;
    pass it from the host (``None`` reads ``context_lens.max()``, a device sync, not for CUDA graphs).
    ``sliding_window``: attend the last ``sliding_window`` keys only (the current one included);
    ``logit_softcap``: scores become ``cap * tanh(scores / cap)`` before the softmax (Gemma 2). Both are
    launch arguments, so a windowed or capped layer is captured in CUDA graphs like any other.
    Returns (or fills ``out``) [num_seqs, num_heads, head_dim] in the query dtype.
    """
    op = "paged_attention_decode"
    _check(op, query, key_cache, value_cache, block_tables, context_lens)
    num_seqs, num_heads, head_dim = query.shape
    _, block_size, num_kv_heads, _ = key_cache.shape
    if out is None:
        out = torch.empty_like(query)
    else:
        check_shape(op, "out", out, list(query.shape))
        check_same_dtype(op, {"query": query, "out": out})
        check_inner_contiguous(op, "out", out)
    check_launchable(
        _paged_decode_kernel,
        op,
        {
            "query": query,
            "key_cache": key_cache,
            "value_cache": value_cache,
            "block_tables": block_tables,
            "context_lens": context_lens,
            "out": out,
        },
    )
    if max_context_len is None:
        max_context_len = int(context_lens.max().item()) if num_seqs else 0
    if max_context_len < 0:
        raise ValueError(f"{op}: max_context_len must be >= 0; got {max_context_len}")
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"{op}: sliding_window must be >= 1 or None; got {sliding_window}")
    if logit_softcap is not None and not logit_softcap > 0:
        raise ValueError(f"{op}: logit_softcap must be > 0 or None; got {logit_softcap}")
    if num_seqs == 0:
        return out
    group = num_heads // num_kv_heads
    block_dim = triton.next_power_of_2(head_dim)
    num_partitions = max(1, math.ceil(max_context_len / PARTITION_TOKENS))
    split = num_partitions > 1
    dot_dtype = dot_operand_dtype(_paged_decode_kernel, query.dtype)
    if split:
        partial_out = torch.empty(
            (num_seqs, num_heads, num_partitions, block_dim),
            dtype=torch.float32,
            device=query.device,
        )
        partial_max = torch.empty(
            (num_seqs, num_heads, num_partitions), dtype=torch.float32, device=query.device
        )
        partial_sum = torch.empty_like(partial_max)
    else:
        partial_out = partial_max = partial_sum = out
    _paged_decode_kernel[(num_seqs, num_kv_heads, num_partitions)](
        query,
        key_cache,
        value_cache,
        block_tables,
        context_lens,
        out,
        partial_out,
        partial_max,
        partial_sum,
        query.stride(0),
        query.stride(1),
        out.stride(0),
        out.stride(1),
        block_tables.stride(0),
        context_lens.stride(0),
        num_kv_heads,
        block_size,
        num_partitions,
        scale if logit_softcap is not None else scale * _LOG2_E,
        sliding_window or 0,
        logit_softcap or 1.0,
        GROUP=group,
        HEAD_DIM=head_dim,
        BLOCK_GROUP=max(16, triton.next_power_of_2(group)),
        BLOCK_DIM=block_dim,
        TILE=_TILE_TOKENS,
        PARTITION=PARTITION_TOKENS,
        SPLIT=split,
        WINDOWED=sliding_window is not None,
        SOFTCAP=logit_softcap is not None,
        DOT_DTYPE=dot_dtype,
        DOT_PRECISION=dot_input_precision(dot_dtype),
        num_warps=4,
    )
    if split:
        _merge_kernel[(num_seqs, num_heads)](
            out,
            partial_out,
            partial_max,
            partial_sum,
            context_lens,
            out.stride(0),
            out.stride(1),
            context_lens.stride(0),
            num_heads,
            num_partitions,
            sliding_window or 0,
            HEAD_DIM=head_dim,
            BLOCK_DIM=block_dim,
            BLOCK_PARTITIONS=triton.next_power_of_2(num_partitions),
            CHUNK=_MERGE_CHUNK,
            PARTITION=PARTITION_TOKENS,
            WINDOWED=sliding_window is not None,
            num_warps=4,
        )
    return out
