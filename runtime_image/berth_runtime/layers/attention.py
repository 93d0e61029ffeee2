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

from berth_runtime.engine.attention_metadata import AttentionMetadata, PrefillRow


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
