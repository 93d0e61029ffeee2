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

from berth_runtime.engine.attention_metadata import AttentionMetadata, pack_prefill_rows
from berth_runtime.engine.decode_graphs import DecodeGraphs
from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.engine.sequence import Sequence
from berth_runtime.models.llama import KVCache, LlamaForCausalLM


@dataclass
class StepResult:
    logits: torch.Tensor
    """[sampling rows, vocab] fp32."""
    sampling_seqs: list[Sequence]
    """The sequences that sample a token this step (their whole context is now computed)."""
    logits_per_seq: list[int]
    """Rows of `logits` per sampling sequence, in order: 1 + its scheduled speculative drafts (the
    model's next token after its last token and after each draft)."""


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
        self.decode_graphs: DecodeGraphs | None = None
        """Decode-only steps run on static buffers (CUDA graphs on CUDA) when set."""

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
        block_size = self.block_size
        query_lens = [row.num_new_tokens for row in ordered]
        starts = [row.seq.num_computed_tokens for row in ordered]
        max_blocks = max(len(row.seq.block_table) for row in ordered)
        block_tables = np.zeros((num_rows, max_blocks + 1), dtype=np.int64)  # last column: context len
        tokens: list[int] = []
        sampling: list[int] = []  # rows whose whole context is computed after this step
        for index, row in enumerate(ordered):
            seq, start = row.seq, starts[index]
            end = start + query_lens[index]
            if seq.draft_token_ids:
                tokens += (seq.token_ids + seq.draft_token_ids)[start:end]
            else:
                tokens += seq.token_ids[start:end]
            if end == seq.num_tokens + len(seq.draft_token_ids):
                sampling.append(index)
            block_tables[index, : len(seq.block_table)] = seq.block_table
            block_tables[index, -1] = end
        num_tokens = len(tokens)

        starts_array = np.array(starts, dtype=np.int64)
        if num_tokens == num_rows:  # decodes only: one token per row
            row_of_token = np.arange(num_rows)
            positions = starts_array
        else:
            lens_array = np.array(query_lens, dtype=np.int64)
            row_of_token = np.repeat(np.arange(num_rows), lens_array)
            row_first_token = np.cumsum(lens_array) - lens_array
            positions = starts_array[row_of_token] + np.arange(num_tokens) - row_first_token[row_of_token]
        slots = block_tables[row_of_token, positions // block_size] * block_size + positions % block_size
        per_token_host = np.empty((3, num_tokens), dtype=np.int64)
        per_token_host[0] = tokens
        per_token_host[1] = positions
        per_token_host[2] = slots

        # Two transfers: the per-token arrays; the block tables with context lengths.
        per_token = self._to_device(per_token_host)
        tables = self._to_device(block_tables)

        if num_tokens == num_rows and self.decode_graphs is not None:
            bucket = self.decode_graphs.bucket_for(num_rows, max_blocks)
            if bucket is not None:
                hidden = self.decode_graphs.run(bucket, per_token, tables)
                if len(sampling) < num_rows:  # a one-token prefill chunk samples nothing yet
                    hidden = hidden[self._to_device(np.array(sampling, dtype=np.int64))]
                seqs = [ordered[index].seq for index in sampling]
                return StepResult(
                    logits=self.model.compute_logits(hidden),
                    sampling_seqs=seqs,
                    logits_per_seq=[1] * len(seqs),
                )

        num_prefill = next((index for index, length in enumerate(query_lens) if length == 1), num_rows)
        prefill_batch = None
        if num_prefill:
            prefill_batch = pack_prefill_rows(
                np.array(query_lens[:num_prefill], dtype=np.int64),
                np.array(starts[:num_prefill], dtype=np.int64) + query_lens[:num_prefill],
                block_tables[:num_prefill, :-1],
                block_size,
                self._to_device,
            )
        decode_max_context_len = max(starts[num_prefill:], default=-1) + 1
        metadata = AttentionMetadata(
            slot_mapping=per_token[2],
            decode_start=sum(query_lens[:num_prefill]),
            decode_block_tables=tables[num_prefill:, : -(-decode_max_context_len // block_size)],
            decode_context_lens=tables[num_prefill:, -1],
            decode_max_context_len=decode_max_context_len,
            prefill_batch=prefill_batch,
        )
        # The last token of each sampling row predicts the next token; a row with drafts also
        # needs the logits after its last real token and after each draft.
        last_token_of_row = np.cumsum(query_lens) - 1
        sampling_seqs = [ordered[index].seq for index in sampling]
        logits_per_seq = [1 + len(seq.draft_token_ids) for seq in sampling_seqs]
        if any(count > 1 for count in logits_per_seq):
            counts = np.array(logits_per_seq, dtype=np.int64)
            ends = np.repeat(last_token_of_row[sampling] + 1, counts)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            logits_rows = ends - np.repeat(counts, counts) + offsets
        else:
            logits_rows = last_token_of_row[sampling]
        logits_index = self._to_device(logits_rows)
        hidden = self.model(per_token[0], per_token[1], self.kv_caches, metadata)
        logits = self.model.compute_logits(hidden[logits_index])
        return StepResult(logits=logits, sampling_seqs=sampling_seqs, logits_per_seq=logits_per_seq)
