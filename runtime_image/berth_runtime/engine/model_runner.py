"""Runs one engine step on the device: flattens the scheduled rows into batched inputs (tokens,
positions, KV slot mapping, block tables), runs the model and returns the logits of the rows that
sample a token this step.

Inputs are built with vectorised numpy on the host and sent in a few transfers; nothing here reads
back from the device (the sampler's token transfer is the step's only sync).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.engine.sequence import Sequence
from berth_runtime.layers.attention import AttentionMetadata, PrefillRow
from berth_runtime.models.llama import KVCache, LlamaForCausalLM


@dataclass
class StepResult:
    logits: torch.Tensor
    """[sampling rows, vocab] fp32."""
    sampling_seqs: list[Sequence]
    """The sequences that sample a token this step (their whole context is now computed)."""


def allocate_kv_caches(
    model: LlamaForCausalLM, num_blocks: int, block_size: int, dtype: torch.dtype, device: torch.device
) -> list[KVCache]:
    """Zeroed (masked padding must never read NaN garbage) key and value caches for every layer."""
    config = model.config
    shape = (num_blocks, block_size, config.num_kv_heads, config.head_dim)
    return [
        (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
        for _ in range(config.num_layers)
    ]


def kv_cache_bytes_per_block(model: LlamaForCausalLM, block_size: int, dtype: torch.dtype) -> int:
    config = model.config
    element_size = torch.empty(0, dtype=dtype).element_size()
    return 2 * config.num_layers * block_size * config.num_kv_heads * config.head_dim * element_size


class ModelRunner:
    def __init__(
        self, model: LlamaForCausalLM, kv_caches: list[KVCache], block_size: int, device: torch.device
    ) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = device
        self._pin = device.type == "cuda"

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self._pin:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    @torch.inference_mode()
    def run(self, rows: list[ScheduledRow]) -> StepResult:
        # Multi-token rows (prefill chunks) first, then single-token rows (decodes) as one batch.
        ordered = sorted(rows, key=lambda row: row.num_new_tokens == 1)
        num_rows = len(ordered)
        query_lens = np.fromiter((row.num_new_tokens for row in ordered), dtype=np.int64, count=num_rows)
        starts = np.fromiter((row.seq.num_computed_tokens for row in ordered), dtype=np.int64, count=num_rows)
        query_ends = np.cumsum(query_lens)
        query_starts = query_ends - query_lens
        num_tokens = int(query_ends[-1])
        context_lens = starts + query_lens

        tokens = np.empty(num_tokens, dtype=np.int64)
        max_blocks = max(len(row.seq.block_table) for row in ordered)
        block_tables = np.zeros((num_rows, max_blocks), dtype=np.int64)
        for index, row in enumerate(ordered):
            seq, start = row.seq, int(starts[index])
            tokens[query_starts[index] : query_ends[index]] = seq.token_ids[
                start : start + row.num_new_tokens
            ]
            block_tables[index, : len(seq.block_table)] = seq.block_table

        row_of_token = np.repeat(np.arange(num_rows), query_lens)
        positions = starts[row_of_token] + (np.arange(num_tokens) - query_starts[row_of_token])
        slots = block_tables[row_of_token, positions // self.block_size] * self.block_size + (
            positions % self.block_size
        )
        sampling = np.flatnonzero(context_lens == np.fromiter((r.seq.num_tokens for r in ordered), np.int64))

        # One transfer for the per-token arrays, one for the block tables and context lengths.
        per_token = self._to_device(np.stack([tokens, positions, slots]))
        tables = self._to_device(np.concatenate([block_tables, context_lens[:, None]], axis=1))
        logits_index = self._to_device(query_ends[sampling] - 1)

        num_prefill = int(np.count_nonzero(query_lens > 1))
        prefill_rows = [
            PrefillRow(
                query_start=int(query_starts[index]),
                query_len=int(query_lens[index]),
                context_len=int(context_lens[index]),
                block_ids=tables[index, : -(-int(context_lens[index]) // self.block_size)],
            )
            for index in range(num_prefill)
        ]
        decode_lens = context_lens[num_prefill:]
        decode_blocks = -(-int(decode_lens.max()) // self.block_size) if len(decode_lens) else 0
        metadata = AttentionMetadata(
            slot_mapping=per_token[2],
            prefill_rows=prefill_rows,
            decode_start=int(query_starts[num_prefill]) if num_prefill < num_rows else num_tokens,
            decode_block_tables=tables[num_prefill:, :decode_blocks],
            decode_context_lens=tables[num_prefill:, -1],
            decode_max_context_len=int(decode_lens.max()) if len(decode_lens) else 0,
        )
        hidden = self.model(per_token[0], per_token[1], self.kv_caches, metadata)
        logits = self.model.compute_logits(hidden[logits_index])
        return StepResult(logits=logits, sampling_seqs=[ordered[index].seq for index in sampling])
