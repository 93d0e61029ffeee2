"""Runs one engine step on the device, in three parts as nano-vllm's runner does: `prepare` flattens
the scheduled rows into a `StepPlan` of host arrays (tokens, positions, KV slot mapping, block
tables, the rows that become logits), `execute` runs the model on a plan (a captured decode graph
when one fits, else eagerly with the step's attention metadata) and returns those logits. Only
`run` knows the sequences, so with tensor parallelism rank 0 plans and the workers `execute` the
plan it broadcasts.

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
from berth_runtime.engine.step_plan import StepPlan
from berth_runtime.models.interface import CausalLM, KVCache, KVLayout
from berth_runtime.parallel.step_channel import StepChannel


@dataclass
class StepInputs:
    """A step's plan (host arrays) and the device copies the forward reads."""

    plan: StepPlan
    per_token: torch.Tensor
    """[3, tokens] int64 on the device: token ids, positions, cache slots."""
    tables: torch.Tensor
    """``plan.block_tables`` on the device."""


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
        self.channel: StepChannel | None = None
        """Rank 0 with tensor parallelism: where each step's plan goes before it runs here."""

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self._pin:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    @torch.inference_mode()
    def run(self, rows: list[ScheduledRow]) -> StepResult:
        """One engine step of the scheduled `rows`: the logits of those that sample a token. With
        tensor parallelism the step's plan goes to the workers first, and they run it alongside."""
        ordered = sorted(rows, key=lambda row: row.num_new_tokens == 1)
        plan, sampling = self.plan(ordered)
        if self.channel is None:
            logits = self.execute(plan)
        else:
            try:
                # A send that fails part-way (a wedged worker's timeout) leaves the workers waiting for
                # the rest of a plan: as out of step as a failed execute.
                self.channel.send(plan)
                logits = self.execute(plan)
            except Exception as error:  # the workers are inside this step's broadcast or collectives
                self.channel.abandon(error)
        sampling_seqs = [ordered[index].seq for index in sampling]
        logits_per_seq = [1 + len(seq.draft_token_ids) for seq in sampling_seqs]
        return StepResult(logits=logits, sampling_seqs=sampling_seqs, logits_per_seq=logits_per_seq)

    @torch.inference_mode()
    def execute(self, plan: StepPlan) -> torch.Tensor:
        """Runs a planned step (on every rank): [logits rows, vocab] fp32."""
        inputs = StepInputs(plan, self._to_device(plan.per_token), self._to_device(plan.block_tables))
        hidden = self.forward(inputs)
        if len(plan.logits_rows) == 0:  # a prefill chunk that samples nothing: no head, no gather
            return torch.empty(0, self.model.config.vocab_size, dtype=torch.float32, device=self.device)
        if len(plan.logits_rows) < hidden.shape[0]:  # rows are increasing: as many as tokens is all
            hidden = hidden[self._to_device(plan.logits_rows)]
        return self.model.compute_logits(hidden)

    def plan(self, ordered: list[ScheduledRow]) -> tuple[StepPlan, list[int]]:
        """The rows' tokens, positions, slots and block tables, the hidden states that become logits,
        and the indices of the rows whose whole context is computed after this step (they sample)."""
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
        drafts = [len(ordered[index].seq.draft_token_ids) for index in sampling]
        logits_rows = _logits_rows(query_lens, sampling, drafts)
        return StepPlan(query_lens, starts, block_tables, per_token, logits_rows), sampling

    def forward(self, inputs: StepInputs) -> torch.Tensor:
        """hidden: [tokens, hidden_size] for every token of the step. A decode-only step replays the
        smallest decode graph it fits; any other step runs eagerly."""
        plan = inputs.plan
        if plan.decode_only and self.decode_graphs is not None:
            max_blocks = plan.block_tables.shape[1] - 1
            bucket = self.decode_graphs.bucket_for(plan.num_rows, max_blocks)
            if bucket is not None:
                return self.decode_graphs.run(bucket, inputs.per_token, inputs.tables)
        metadata = self._attention_metadata(inputs)
        hidden: torch.Tensor = self.model(inputs.per_token[0], inputs.per_token[1], self.kv_caches, metadata)
        return hidden

    def _attention_metadata(self, inputs: StepInputs) -> AttentionMetadata:
        """The eager step's attention metadata; the multi-token rows are packed only when there are any."""
        plan = inputs.plan
        num_prefill = int(np.count_nonzero(plan.query_lens > 1))
        prefill_batch = None
        if num_prefill:
            query_lens = plan.query_lens[:num_prefill]
            prefill_batch = pack_prefill_rows(
                query_lens,
                plan.starts[:num_prefill] + query_lens,
                plan.block_tables[:num_prefill, :-1],
                self.block_size,
                self._to_device,
            )
        decode_max_context_len = int(plan.starts[num_prefill:].max(initial=-1)) + 1
        decode_blocks = -(-decode_max_context_len // self.block_size)
        return AttentionMetadata(
            slot_mapping=inputs.per_token[2],
            decode_start=int(plan.query_lens[:num_prefill].sum()),
            decode_block_tables=inputs.tables[num_prefill:, :decode_blocks],
            decode_context_lens=inputs.tables[num_prefill:, -1],
            decode_max_context_len=decode_max_context_len,
            prefill_batch=prefill_batch,
        )


def _logits_rows(query_lens: np.ndarray, sampling: list[int], drafts: list[int]) -> np.ndarray:
    """The tokens whose hidden states the sampler needs: each sampling row's last token predicts its
    next token; a row with drafts also needs those after its last real token and after each draft."""
    last_token_of_row = np.cumsum(query_lens) - 1
    if not any(drafts):
        return np.asarray(last_token_of_row[sampling], dtype=np.int64)
    counts = np.array(drafts, dtype=np.int64) + 1
    ends = np.repeat(last_token_of_row[sampling] + 1, counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.asarray(ends - np.repeat(counts, counts) + offsets, dtype=np.int64)
