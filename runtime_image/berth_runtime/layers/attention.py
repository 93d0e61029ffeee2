"""Attention over the paged KV cache (torch reference).

A step's tokens are laid out flat: first the multi-token rows (prefill chunks), each attended on its
own, then the single-token rows (decodes), attended as one batch. Keys and values are written into
the cache first (`store_kv`), then read back through the block tables, so a chunk sees the prefix
cached by earlier steps or by other requests (prefix caching) exactly like its own tokens.

Cache layout per layer: key_cache, value_cache: [num_blocks, block_size, kv_heads, head_dim].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as functional


@dataclass
class PrefillRow:
    """One multi-token row of the step (host ints, so no device sync is needed to slice)."""

    query_start: int
    query_len: int
    context_len: int
    """Tokens in the cache once this row's tokens are stored (cached prefix + query_len)."""
    block_ids: torch.Tensor
    """[ceil(context_len / block_size)] block ids on the device."""


@dataclass
class PrefillBatch:
    """The step's multi-token rows packed for one variable-length attention call (the kernel path):
    every row's context, cached prefix and its own tokens, as flat cache slots row after row, with
    the cumulative query and context offsets a varlen kernel takes (and their host copies)."""

    kv_slots: torch.Tensor
    """[sum of context lengths] int64 flat cache slot of each context token, row after row."""
    cu_seq_q: torch.Tensor
    """[rows + 1] int32 offsets of each row's queries in the step's tokens (device)."""
    cu_seq_k: torch.Tensor
    """[rows + 1] int32 offsets of each row's context in ``kv_slots`` (device)."""
    query_offsets: list[int]
    context_offsets: list[int]
    max_query_len: int
    max_context_len: int


def pack_prefill_rows(
    query_lens: np.ndarray,
    context_lens: np.ndarray,
    block_tables: np.ndarray,
    block_size: int,
    to_device: Callable[[np.ndarray], torch.Tensor],
) -> PrefillBatch:
    """``query_lens``, ``context_lens``: [rows]; ``block_tables``: [rows, >= max blocks] host block ids;
    ``to_device`` moves a host array (two transfers in all)."""
    query_offsets = np.zeros(len(query_lens) + 1, dtype=np.int64)
    query_offsets[1:] = np.cumsum(query_lens)
    context_offsets = np.zeros(len(context_lens) + 1, dtype=np.int64)
    context_offsets[1:] = np.cumsum(context_lens)
    row_of_token = np.repeat(np.arange(len(context_lens)), context_lens)
    positions = np.arange(context_offsets[-1]) - context_offsets[row_of_token]
    kv_slots = block_tables[row_of_token, positions // block_size] * block_size + positions % block_size
    offsets = to_device(np.stack([query_offsets, context_offsets]).astype(np.int32))
    return PrefillBatch(
        kv_slots=to_device(kv_slots.astype(np.int64)),
        cu_seq_q=offsets[0],
        cu_seq_k=offsets[1],
        query_offsets=query_offsets.tolist(),
        context_offsets=context_offsets.tolist(),
        max_query_len=int(query_lens.max()),
        max_context_len=int(context_lens.max()),
    )


@dataclass
class AttentionMetadata:
    """Where each token of the step lives in the KV cache and what it attends to."""

    slot_mapping: torch.Tensor
    """[tokens] flat cache slot (block_id * block_size + offset) of each token's key/value."""
    prefill_rows: list[PrefillRow]
    decode_start: int
    """Index of the first single-token row; tokens from here to the end are decodes."""
    decode_block_tables: torch.Tensor
    """[decodes, max_blocks] block ids (padding is masked out)."""
    decode_context_lens: torch.Tensor
    """[decodes] tokens in the cache for each decode, its own included."""
    decode_max_context_len: int
    prefill_batch: PrefillBatch | None = None
    """``prefill_rows`` packed for the kernel path's one varlen call; None without prefill rows."""


def store_kv(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """key, value: [tokens, kv_heads, head_dim] written at their slots."""
    kv_heads, head_dim = key.shape[1], key.shape[2]
    key_cache.view(-1, kv_heads, head_dim).index_copy_(0, slot_mapping, key)
    value_cache.view(-1, kv_heads, head_dim).index_copy_(0, slot_mapping, value)


def paged_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """query: [tokens, heads, head_dim] -> [tokens, heads, head_dim] (causal, over the cache)."""
    if not metadata.prefill_rows:  # decodes only: the common step, without an extra copy
        return _attend_decodes(query, key_cache, value_cache, metadata, scale)
    output = torch.empty_like(query)
    for row in metadata.prefill_rows:
        rows = slice(row.query_start, row.query_start + row.query_len)
        output[rows] = _attend_prefill(query[rows], key_cache, value_cache, row, scale)
    if metadata.decode_start < query.shape[0]:
        output[metadata.decode_start :] = _attend_decodes(
            query[metadata.decode_start :], key_cache, value_cache, metadata, scale
        )
    return output


def _gather(cache: torch.Tensor, block_ids: torch.Tensor, context_len: int) -> torch.Tensor:
    """-> [kv_heads, context_len, head_dim]"""
    gathered = cache.index_select(0, block_ids).flatten(0, 1)[
        :context_len
    ]  # [context_len, kv_heads, head_dim]
    return gathered.transpose(0, 1)


def _attend_prefill(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    row: PrefillRow,
    scale: float,
) -> torch.Tensor:
    keys = _gather(key_cache, row.block_ids, row.context_len)
    values = _gather(value_cache, row.block_ids, row.context_len)
    heads_first = query.transpose(0, 1)  # [heads, query_len, head_dim]
    if row.context_len == row.query_len:
        out = functional.scaled_dot_product_attention(
            heads_first, keys, values, is_causal=True, scale=scale, enable_gqa=True
        )
    else:
        # The chunk's queries sit at positions context_len - query_len .. context_len - 1.
        query_positions = torch.arange(row.context_len - row.query_len, row.context_len, device=query.device)
        key_positions = torch.arange(row.context_len, device=query.device)
        mask = key_positions.unsqueeze(0) <= query_positions.unsqueeze(1)  # [query_len, context_len]
        out = functional.scaled_dot_product_attention(
            heads_first, keys, values, attn_mask=mask, scale=scale, enable_gqa=True
        )
    return out.transpose(0, 1)


def _attend_decodes(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    decodes = query.shape[0]
    max_len = metadata.decode_max_context_len
    # [decodes, max_blocks * block_size, kv_heads, head_dim] -> [decodes, kv_heads, max_len, head_dim]
    tables = metadata.decode_block_tables
    # index_select over the flattened table is several times faster than advanced indexing on CPU.
    keys = key_cache.index_select(0, tables.flatten()).view(decodes, -1, *key_cache.shape[2:])
    values = value_cache.index_select(0, tables.flatten()).view(decodes, -1, *value_cache.shape[2:])
    keys = keys[:, :max_len].transpose(1, 2)
    values = values[:, :max_len].transpose(1, 2)
    positions = torch.arange(max_len, device=query.device)
    mask = positions.unsqueeze(0) < metadata.decode_context_lens.unsqueeze(1)  # [decodes, max_len]
    out = functional.scaled_dot_product_attention(
        query.view(decodes, -1, 1, query.shape[-1]),  # [decodes, heads, 1, head_dim]
        keys,
        values,
        attn_mask=mask.view(decodes, 1, 1, max_len),
        scale=scale,
        enable_gqa=True,
    )
    return out.view(decodes, -1, query.shape[-1])
