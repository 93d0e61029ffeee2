"""Attention over the paged KV cache (torch reference).

A step's tokens are laid out flat: first the multi-token rows (prefill chunks), each attended on its
own, then the single-token rows (decodes), attended as one batch. Keys and values are written into
the cache first (`store_kv`), then read back through the block tables, so a chunk sees the prefix
cached by earlier steps or by other requests (prefix caching) exactly like its own tokens.

Cache layout per layer: key_cache, value_cache: [num_blocks, block_size, kv_heads, head_dim].
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from berth_runtime.engine.attention_metadata import AttentionMetadata, PrefillBatch


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
    if metadata.prefill_batch is None:  # decodes only: the common step, without an extra copy
        return _attend_decodes(query, key_cache, value_cache, metadata, scale)
    output = torch.empty_like(query)
    output[: metadata.decode_start] = _attend_prefill(
        query[: metadata.decode_start], key_cache, value_cache, metadata.prefill_batch, scale
    )
    if metadata.decode_start < query.shape[0]:
        output[metadata.decode_start :] = _attend_decodes(
            query[metadata.decode_start :], key_cache, value_cache, metadata, scale
        )
    return output


def _attend_prefill(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    batch: PrefillBatch,
    scale: float,
) -> torch.Tensor:
    """Each row on its own over its context; query: [prefill tokens, heads, head_dim]."""
    kv_heads, head_dim = key_cache.shape[2], key_cache.shape[3]
    # [sum of context lengths, kv_heads, head_dim], row after row
    keys = key_cache.view(-1, kv_heads, head_dim).index_select(0, batch.kv_slots)
    values = value_cache.view(-1, kv_heads, head_dim).index_select(0, batch.kv_slots)
    output = torch.empty_like(query)
    for row in range(len(batch.query_offsets) - 1):
        rows = slice(batch.query_offsets[row], batch.query_offsets[row + 1])
        context = slice(batch.context_offsets[row], batch.context_offsets[row + 1])
        output[rows] = _attend_prefill_row(
            query[rows], keys[context].transpose(0, 1), values[context].transpose(0, 1), scale
        )
    return output


def _attend_prefill_row(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float
) -> torch.Tensor:
    """query: [query_len, heads, head_dim]; keys, values: [kv_heads, context_len, head_dim]."""
    query_len, context_len = query.shape[0], keys.shape[1]
    heads_first = query.transpose(0, 1)  # [heads, query_len, head_dim]
    if context_len == query_len:
        out = functional.scaled_dot_product_attention(
            heads_first, keys, values, is_causal=True, scale=scale, enable_gqa=True
        )
    else:
        # The chunk's queries sit at positions context_len - query_len .. context_len - 1.
        query_positions = torch.arange(context_len - query_len, context_len, device=query.device)
        key_positions = torch.arange(context_len, device=query.device)
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
