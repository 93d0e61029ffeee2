"""Logit processors that depend on the request rather than on the model: `logit_bias` and the
presence, frequency and repetition penalties, applied per row of a batch.

Penalties need, per request, how often each token occurs in its output and which tokens its prompt
holds. Rebuilding that from the token lists every step would cost host time in proportion to the
whole context, so each penalised sequence keeps `TokenCounts` on the logits' device, created at its
first sampled step and then brought up to date with only the tokens added since (one small op per
sequence a step). A step gathers its penalised rows' counts in one stack; a row that scores
speculative drafts also counts the drafts before it, so each position is judged on its own history
exactly as plain decoding would judge it.

Order (vLLM's): logit_bias is added first, then the repetition penalty (`transformers`' rule over
prompt and output tokens: divide a positive logit, multiply a negative one), then frequency and
presence (OpenAI's rule over output tokens: logit -= frequency * count + presence * [count > 0]).
Rows without these settings are never written, so their logits stay bit for bit what they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from berth_runtime.engine.host_to_device import to_device

if TYPE_CHECKING:
    from berth_runtime.engine.sequence import Sequence


@dataclass(eq=False)
class TokenCounts:
    """One penalised sequence's token statistics, on the device where its logits are."""

    output_counts: torch.Tensor
    """[vocab] int32: how often each token occurs in the output so far."""
    in_prompt: torch.Tensor
    """[vocab] bool: whether each token occurs in the prompt."""
    num_counted: int = 0
    """Output tokens already in `output_counts`."""

    @classmethod
    def of(cls, seq: Sequence, vocab: int, device: torch.device) -> TokenCounts:
        in_prompt = torch.zeros(vocab, dtype=torch.bool, device=device)
        in_prompt[to_device(seq.prompt_token_ids, torch.int64, device)] = True
        counts = cls(torch.zeros(vocab, dtype=torch.int32, device=device), in_prompt)
        counts.update(seq)
        return counts

    def update(self, seq: Sequence) -> None:
        """Counts the output tokens `seq` gained since the last update."""
        new_tokens = seq.token_ids[seq.num_prompt_tokens + self.num_counted :]
        if not new_tokens:
            return
        device = self.output_counts.device
        self.output_counts.index_put_(
            (to_device(new_tokens, torch.int64, device),),
            torch.ones(len(new_tokens), dtype=torch.int32, device=device),
            accumulate=True,
        )
        self.num_counted += len(new_tokens)


def apply_logit_bias(logits: torch.Tensor, seqs: list[Sequence]) -> bool:
    """Adds each row's logit_bias to `logits` [rows, vocab] in place; False when no row has one."""
    rows: list[int] = []
    tokens: list[int] = []
    biases: list[float] = []
    for row, seq in enumerate(seqs):
        for token_id, bias in seq.params.logit_bias:
            rows.append(row)
            tokens.append(token_id)
            biases.append(bias)
    if not rows:
        return False
    device = logits.device
    logits.index_put_(
        (to_device(rows, torch.int64, device), to_device(tokens, torch.int64, device)),
        to_device(biases, torch.float32, device),
        accumulate=True,
    )
    return True


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence], draft_prefix: list[int]) -> bool:
    """Applies the repetition, frequency and presence penalties to `logits` [rows, vocab] in place.

    Row i belongs to `seqs[i]` with the first `draft_prefix[i]` of its draft tokens taken as already
    generated. Returns False (and touches nothing) when no row has a penalty.
    """
    penalised = [row for row, seq in enumerate(seqs) if seq.params.has_penalties]
    if not penalised:
        return False
    vocab, device = logits.shape[1], logits.device
    states: dict[int, TokenCounts] = {}  # one per sequence, however many rows it has
    for row in penalised:
        seq = seqs[row]
        if id(seq) in states:
            continue
        if seq.token_counts is None:
            seq.token_counts = TokenCounts.of(seq, vocab, device)
        else:
            seq.token_counts.update(seq)
        states[id(seq)] = seq.token_counts
    row_states = [states[id(seqs[row])] for row in penalised]
    counts = torch.stack([state.output_counts for state in row_states])  # [P, vocab] int32
    _add_drafts(counts, [seqs[row] for row in penalised], [draft_prefix[row] for row in penalised])
    params = [seqs[row].params for row in penalised]
    index = to_device(penalised, torch.int64, device)
    penalised_logits = logits[index]  # [P, vocab]
    if any(p.repetition_penalty != 1 for p in params):
        seen = counts > 0
        seen |= torch.stack([state.in_prompt for state in row_states])
        repetition = to_device([p.repetition_penalty for p in params], torch.float32, device)[:, None]
        repeated = torch.where(
            penalised_logits < 0, penalised_logits * repetition, penalised_logits / repetition
        )
        penalised_logits = torch.where(seen, repeated, penalised_logits)
    if any(p.frequency_penalty != 0 or p.presence_penalty != 0 for p in params):
        frequency = to_device([p.frequency_penalty for p in params], torch.float32, device)[:, None]
        presence = to_device([p.presence_penalty for p in params], torch.float32, device)[:, None]
        penalised_logits = penalised_logits - frequency * counts - presence * (counts > 0)
    logits[index] = penalised_logits
    return True


def _add_drafts(counts: torch.Tensor, seqs: list[Sequence], draft_prefix: list[int]) -> None:
    """Counts row i's first `draft_prefix[i]` drafts into `counts` [rows, vocab] (only that row's)."""
    rows: list[int] = []
    tokens: list[int] = []
    for row, (seq, prefix) in enumerate(zip(seqs, draft_prefix, strict=True)):
        drafts = seq.draft_token_ids[:prefix]
        rows += [row] * len(drafts)
        tokens += drafts
    if not rows:
        return
    device = counts.device
    counts.index_put_(
        (to_device(rows, torch.int64, device), to_device(tokens, torch.int64, device)),
        torch.ones(len(rows), dtype=torch.int32, device=device),
        accumulate=True,
    )
