"""Logit processors that depend on the request rather than on the model: `logit_bias` and the
presence, frequency and repetition penalties, applied per row of a batch.

A penalty only ever changes the logits of tokens the request has already seen, a few hundred or
thousand ids against a vocabulary of 32k-256k, so the work is sparse: each penalised sequence keeps
its distinct prompt and output tokens with their output counts on the host (`TokenCounts`, brought up
to date with only the tokens added since the last step), a step sends the (row, token, count) triples
of its penalised rows in one transfer, gathers those logits, applies the rules elementwise and
scatters them back. Nothing is proportional to the vocabulary and there is no per-sequence device
op. A row that scores speculative drafts also counts the drafts before it, so each position is
judged on its own history exactly as plain decoding would judge it.

Order (vLLM's): logit_bias is added first, then the repetition penalty (`transformers`' rule over
prompt and output tokens: divide a positive logit, multiply a negative one), then frequency and
presence (OpenAI's rule over output tokens: logit -= frequency * count, then -= presence * [count >
0]). Rows without these settings are never written, so their logits stay bit for bit what they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from berth_runtime.engine.host_to_device import to_device

if TYPE_CHECKING:
    from berth_runtime.engine.sequence import Sequence


class TokenCounts:
    """One penalised sequence's distinct tokens (prompt and output), each with its output count."""

    def __init__(self, prompt_token_ids: list[int]) -> None:
        distinct = np.unique(np.asarray(prompt_token_ids, dtype=np.int64))
        capacity = max(2 * distinct.size, 64)
        self.token_ids = np.zeros(capacity, dtype=np.int64)
        """[capacity]: the first `size` entries are the distinct tokens seen, in first-seen order."""
        self.counts = np.zeros(capacity, dtype=np.float32)
        """[capacity]: each token's occurrences in the output (0 for a token only in the prompt)."""
        self.size = distinct.size
        self.token_ids[: self.size] = distinct
        self.slot_of = {token_id: slot for slot, token_id in enumerate(distinct.tolist())}
        self.num_counted = 0
        """Output tokens already counted."""

    def update(self, seq: Sequence) -> None:
        """Counts the output tokens `seq` gained since the last update."""
        for token_id in seq.token_ids[seq.num_prompt_tokens + self.num_counted :]:
            slot = self.slot_of.get(token_id)
            if slot is None:
                slot = self._add(token_id)
            self.counts[slot] += 1
        self.num_counted = seq.num_output_tokens

    def with_drafts(self, drafts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, counts) as if `drafts` had been generated too; views when there are none."""
        token_ids, counts = self.token_ids[: self.size], self.counts[: self.size]
        if not drafts:
            return token_ids, counts
        counts = counts.copy()
        unseen: dict[int, int] = {}
        for token_id in drafts:
            slot = self.slot_of.get(token_id)
            if slot is None:
                unseen[token_id] = unseen.get(token_id, 0) + 1
            else:
                counts[slot] += 1
        return (
            np.concatenate([token_ids, np.fromiter(unseen, dtype=np.int64, count=len(unseen))]),
            np.concatenate([counts, np.fromiter(unseen.values(), dtype=np.float32, count=len(unseen))]),
        )

    def _add(self, token_id: int) -> int:
        if self.size == self.token_ids.size:
            self.token_ids = np.concatenate([self.token_ids, np.zeros_like(self.token_ids)])
            self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
        slot = self.size
        self.token_ids[slot] = token_id
        self.slot_of[token_id] = slot
        self.size += 1
        return slot


def apply_logit_bias(logits: torch.Tensor, seqs: list[Sequence]) -> None:
    """Adds each row's logit_bias to `logits` [rows, vocab] in place."""
    rows: list[int] = []
    tokens: list[int] = []
    biases: list[float] = []
    for row, seq in enumerate(seqs):
        for token_id, bias in seq.params.logit_bias:
            rows.append(row)
            tokens.append(token_id)
            biases.append(bias)
    if not rows:
        return
    device = logits.device
    logits.index_put_(
        (to_device(rows, torch.int64, device), to_device(tokens, torch.int64, device)),
        to_device(biases, torch.float32, device),
        accumulate=True,
    )


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence], drafts_before: list[int]) -> None:
    """Applies the repetition, frequency and presence penalties to `logits` [rows, vocab]
    (contiguous) in place.

    Row i belongs to `seqs[i]` with the first `drafts_before[i]` of its draft tokens taken as
    already generated.
    """
    penalised = [row for row, seq in enumerate(seqs) if seq.params.has_penalties]
    if not penalised:
        return
    vocab = logits.shape[1]
    positions: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    updated: set[int] = set()  # a sequence with drafts has several rows; count its tokens once
    for row in penalised:
        seq = seqs[row]
        if seq.token_counts is None:
            seq.token_counts = TokenCounts(seq.prompt_token_ids)
        if id(seq) not in updated:
            seq.token_counts.update(seq)
            updated.add(id(seq))
        row_token_ids, row_counts = seq.token_counts.with_drafts(seq.draft_token_ids[: drafts_before[row]])
        positions.append(row * vocab + row_token_ids)
        counts.append(row_counts)
    entries_per_row = [row_counts.size for row_counts in counts]
    params = [seqs[row].params for row in penalised]
    output_counts = np.concatenate(counts)  # [entries] float32
    # Per entry, in float32 as torch would compute them: the repetition penalty, frequency * count
    # and presence * [count > 0] (OpenAI's two subtractions stay separate, so rounding matches).
    terms = np.empty((3, output_counts.size), dtype=np.float32)
    terms[0] = np.repeat(np.array([p.repetition_penalty for p in params], dtype=np.float32), entries_per_row)
    terms[1] = np.repeat(np.array([p.frequency_penalty for p in params], dtype=np.float32), entries_per_row)
    terms[1] *= output_counts
    terms[2] = np.repeat(np.array([p.presence_penalty for p in params], dtype=np.float32), entries_per_row)
    terms[2] *= output_counts > 0
    device = logits.device
    flat_positions = _from_numpy(np.concatenate(positions), device)
    repetition, frequency_terms, presence_terms = _from_numpy(terms, device)
    flat_logits = logits.view(-1)
    penalised_logits = flat_logits.index_select(0, flat_positions)  # [entries]
    if any(p.repetition_penalty != 1 for p in params):
        penalised_logits = torch.where(
            penalised_logits < 0, penalised_logits * repetition, penalised_logits / repetition
        )
    if any(p.frequency_penalty != 0 or p.presence_penalty != 0 for p in params):
        penalised_logits = penalised_logits - frequency_terms - presence_terms
    flat_logits.index_copy_(0, flat_positions, penalised_logits)


def _from_numpy(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
