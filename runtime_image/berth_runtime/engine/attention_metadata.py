"""Where each token of an engine step lives in the paged KV cache and what it attends to: built by
the model runner from the scheduled rows on the host, read by the attention ops (the torch reference
and the kernels) inside the model's forward pass.

A step's tokens are laid out flat: first the multi-token rows (prefill chunks, speculative rows),
then the single-token rows (decodes). The engine owns this layout, so the metadata describing it
lives here; the ops only read it.

Cache layout per layer: key_cache, value_cache: [num_blocks, block_size, kv_heads, head_dim].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PrefillBatch:
    """The step's multi-token rows packed for attention: every row's context, cached prefix and its
    own tokens, as flat cache slots row after row, with the cumulative query and context offsets a
    varlen kernel takes on the device, and their host copies (to slice a row without a sync)."""

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
    decode_start: int
    """Index of the first single-token row: tokens before it belong to the prefill rows, tokens from
    here to the end are decodes."""
    decode_block_tables: torch.Tensor
    """[decodes, max_blocks] block ids (padding is masked out)."""
    decode_context_lens: torch.Tensor
    """[decodes] tokens in the cache for each decode, its own included."""
    decode_max_context_len: int
    prefill_batch: PrefillBatch | None = None
    """The multi-token rows (tokens ``[:decode_start]``); None when the step has none."""
