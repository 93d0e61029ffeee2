"""Runs one engine step on the device, in three parts as nano-vllm's runner does: `prepare` flattens
the scheduled rows into batched inputs (tokens, positions, KV slot mapping, block tables), `forward`
runs the model on them (a captured decode graph when one fits, else eagerly with the step's
attention metadata), and `sampling_logits` returns the logits of the rows that sample a token.

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
from berth_runtime.models.interface import CausalLM, KVCache, KVLayout


@dataclass
class StepInputs:
    """A step's scheduled rows flattened: the multi-token rows (prefill chunks, rows with speculative
    drafts) first, then the single-token rows (decodes). Host arrays, and their device copies."""

    rows: list[ScheduledRow]
    """In step order."""
    query_lens: np.ndarray
    """[rows] int64 tokens each row computes this step."""
    starts: np.ndarray
    """[rows] int64 tokens of each row already in the cache before the step."""
    block_tables: np.ndarray
    """[rows, max_blocks + 1] int64 each row's block ids, then (last column) its context length
    after the step."""
    per_token: torch.Tensor
    """[3, tokens] int64 on the device: token ids, positions, cache slots."""
    tables: torch.Tensor
    """``block_tables`` on the device."""
    sampling: list[int]
    """Indices of the rows whose whole context is computed after this step (they sample a token)."""

    @property
    def decode_only(self) -> bool:
        return self.per_token.shape[1] == len(self.rows)


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
    model: CausalLM, num_blocks: int, block_size: int, dtype: torch.dtype, device: torch.device
) -> list[KVCache]:
    """Zeroed (masked padding must never read NaN garbage) key and value caches for every layer, in
    the layout the model asks for."""
    layout: KVLayout = model.kv_layout
    shape = (num_blocks, block_size, layout.num_kv_heads, layout.head_dim)
    return [
        (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
        for _ in range(layout.num_layers)
    ]


def kv_cache_bytes_per_block(model: CausalLM, block_size: int, dtype: torch.dtype) -> int:
    layout = model.kv_layout
    element_size = torch.empty(0, dtype=dtype).element_size()
    return 2 * layout.num_layers * block_size * layout.num_kv_heads * layout.head_dim * element_size


class ModelRunner:
    def __init__(
        self, model: CausalLM, kv_caches: list[KVCache], block_size: int, device: torch.device
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
        """One engine step of the scheduled `rows`: the logits of those that sample a token."""
        inputs = self.prepare(rows)
        hidden = self.forward(inputs)
        return self.sampling_logits(inputs, hidden)

    def prepare(self, rows: list[ScheduledRow]) -> StepInputs:
        """The rows' tokens, positions and slots, and their block tables, in two transfers."""
        ordered = sorted(rows, key=lambda row: row.num_new_tokens == 1)
        num_rows = len(ordered)
        query_lens = np.array([row.num_new_tokens for row in ordered], dtype=np.int64)
        starts = np.array([row.seq.num_computed_tokens for row in ordered], dtype=np.int64)
        max_blocks = max(len(row.seq.block_table) for row in ordered)
        block_tables = np.zeros((num_rows, max_blocks + 1), dtype=np.int64)  # last column: context len
        tokens: list[int] = []
        sampling: list[int] = []
        for index, row in enumerate(ordered):
            seq, start = row.seq, int(starts[index])
            end = start + row.num_new_tokens
            if seq.draft_token_ids:
                tokens += (seq.token_ids + seq.draft_token_ids)[start:end]
            else:
                tokens += seq.token_ids[start:end]
            if end == seq.num_tokens + len(seq.draft_token_ids):
                sampling.append(index)
            block_tables[index, : len(seq.block_table)] = seq.block_table
            block_tables[index, -1] = end
        num_tokens = len(tokens)

        if num_tokens == num_rows:  # decodes only: one token per row
            row_of_token = np.arange(num_rows)
            positions = starts
        else:
            row_of_token = np.repeat(np.arange(num_rows), query_lens)
            row_first_token = np.cumsum(query_lens) - query_lens
            positions = starts[row_of_token] + np.arange(num_tokens) - row_first_token[row_of_token]
        block_size = self.block_size
        slots = block_tables[row_of_token, positions // block_size] * block_size + positions % block_size
        per_token = np.empty((3, num_tokens), dtype=np.int64)
        per_token[0] = tokens
        per_token[1] = positions
        per_token[2] = slots
        return StepInputs(
            rows=ordered,
            query_lens=query_lens,
            starts=starts,
            block_tables=block_tables,
            per_token=self._to_device(per_token),
            tables=self._to_device(block_tables),
            sampling=sampling,
        )

    def forward(self, inputs: StepInputs) -> torch.Tensor:
        """hidden: [tokens, hidden_size] for every token of the step. A decode-only step replays the
        smallest decode graph it fits; any other step runs eagerly."""
        if inputs.decode_only and self.decode_graphs is not None:
            max_blocks = inputs.block_tables.shape[1] - 1
            bucket = self.decode_graphs.bucket_for(len(inputs.rows), max_blocks)
            if bucket is not None:
                return self.decode_graphs.run(bucket, inputs.per_token, inputs.tables)
        metadata = self._attention_metadata(inputs)
        hidden: torch.Tensor = self.model(inputs.per_token[0], inputs.per_token[1], self.kv_caches, metadata)
        return hidden

    def _attention_metadata(self, inputs: StepInputs) -> AttentionMetadata:
        """The eager step's attention metadata; the multi-token rows are packed only when there are any."""
        num_prefill = int(np.count_nonzero(inputs.query_lens > 1))
        prefill_batch = None
        if num_prefill:
            query_lens = inputs.query_lens[:num_prefill]
            prefill_batch = pack_prefill_rows(
                query_lens,
                inputs.starts[:num_prefill] + query_lens,
                inputs.block_tables[:num_prefill, :-1],
                self.block_size,
                self._to_device,
            )
        decode_max_context_len = int(inputs.starts[num_prefill:].max(initial=-1)) + 1
        decode_blocks = -(-decode_max_context_len // self.block_size)
        return AttentionMetadata(
            slot_mapping=inputs.per_token[2],
            decode_start=int(inputs.query_lens[:num_prefill].sum()),
            decode_block_tables=inputs.tables[num_prefill:, :decode_blocks],
            decode_context_lens=inputs.tables[num_prefill:, -1],
            decode_max_context_len=decode_max_context_len,
            prefill_batch=prefill_batch,
        )

    def sampling_logits(self, inputs: StepInputs, hidden: torch.Tensor) -> StepResult:
        """The logits the engine's sampler draws from: each sampling row's last token predicts its next
        token; a row with drafts also needs the logits after its last real token and after each draft.
        The hidden states are gathered only when some token samples nothing."""
        sampling_seqs = [inputs.rows[index].seq for index in inputs.sampling]
        logits_per_seq = [1 + len(seq.draft_token_ids) for seq in sampling_seqs]
        last_token_of_row = np.cumsum(inputs.query_lens) - 1
        if any(count > 1 for count in logits_per_seq):
            counts = np.array(logits_per_seq, dtype=np.int64)
            ends = np.repeat(last_token_of_row[inputs.sampling] + 1, counts)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            logits_rows = ends - np.repeat(counts, counts) + offsets
        else:
            logits_rows = last_token_of_row[inputs.sampling]
        if len(logits_rows) < hidden.shape[0]:  # rows are increasing: as many as tokens means all of them
            hidden = hidden[self._to_device(logits_rows)]
        logits = self.model.compute_logits(hidden)
        return StepResult(logits=logits, sampling_seqs=sampling_seqs, logits_per_seq=logits_per_seq)
