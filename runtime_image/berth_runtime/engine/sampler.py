"""Turns a step's logits into one token per sampling sequence, each with its own parameters.

Greedy, temperature, top-k and top-p run as batched tensor ops over all rows; random choice uses
the exponential race (argmax of p / q, q ~ Exp(1)), which equals sampling from p and lets a seeded
request draw from its own generator while the others share one. `min_tokens` masks the end tokens
until enough were produced. The token ids (and requested logprobs) are the only device reads.
"""

from __future__ import annotations

import torch

from berth_runtime.engine.outputs import TokenLogprob
from berth_runtime.engine.sequence import Sequence


def to_device(
    values: list[float] | list[int] | list[bool], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A small host list on `device` without a sync: through pinned memory, asynchronously, on CUDA."""
    tensor = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


class Sampler:
    def __init__(self, eos_token_ids: tuple[int, ...], generator: torch.Generator) -> None:
        self.eos_token_ids = eos_token_ids
        self.generator = generator
        """Shared random stream for requests without a seed."""

    def __call__(
        self, logits: torch.Tensor, seqs: list[Sequence]
    ) -> tuple[list[int], list[TokenLogprob | None]]:
        """logits: [rows, vocab] fp32, one row per sequence in `seqs`."""
        rows, vocab = logits.shape
        device = logits.device
        want_logprobs = [index for index, seq in enumerate(seqs) if seq.params.logprobs is not None]
        raw_logprobs = torch.log_softmax(logits[want_logprobs], dim=-1) if want_logprobs else None
        logits = self._mask_end_tokens(logits, seqs)

        greedy = all(seq.params.is_greedy for seq in seqs)
        if greedy:
            sampled = logits.argmax(dim=-1)
        else:
            temperatures = to_device([seq.params.temperature or 1.0 for seq in seqs], torch.float32, device)
            scaled = logits / temperatures.unsqueeze(1)
            scaled = self._top_k_top_p(scaled, seqs, vocab)
            probs = torch.softmax(scaled, dim=-1)
            noise = torch.empty_like(probs).exponential_(generator=self.generator)
            for index, seq in enumerate(seqs):
                if seq.generator is not None:
                    noise[index].exponential_(generator=seq.generator)
            random_choice = (probs / noise).argmax(dim=-1)
            is_greedy = to_device([seq.params.is_greedy for seq in seqs], torch.bool, device)
            sampled = torch.where(is_greedy, logits.argmax(dim=-1), random_choice)

        token_ids: list[int] = sampled.tolist()
        logprobs: list[TokenLogprob | None] = [None] * rows
        if raw_logprobs is not None:
            logprobs_of = self._logprobs(
                raw_logprobs, sampled[want_logprobs], [seqs[i] for i in want_logprobs]
            )
            for index, entry in zip(want_logprobs, logprobs_of, strict=True):
                logprobs[index] = entry
        return token_ids, logprobs

    def _mask_end_tokens(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        """Forbids EOS and stop token ids for sequences that have not reached min_tokens."""
        row_index: list[int] = []
        token_index: list[int] = []
        for index, seq in enumerate(seqs):
            params = seq.params
            if seq.num_output_tokens >= params.min_tokens:
                continue
            banned = set(params.stop_token_ids)
            if not params.ignore_eos:
                banned.update(self.eos_token_ids)
            banned = {token for token in banned if token < logits.shape[1]}
            row_index += [index] * len(banned)
            token_index += sorted(banned)
        if not row_index:
            return logits
        logits = logits.clone()
        logits[
            to_device(row_index, torch.int64, logits.device),
            to_device(token_index, torch.int64, logits.device),
        ] = float("-inf")
        return logits

    def _top_k_top_p(self, logits: torch.Tensor, seqs: list[Sequence], vocab: int) -> torch.Tensor:
        if all(seq.params.top_k in (0, vocab) and seq.params.top_p >= 1.0 for seq in seqs):
            return logits
        device = logits.device
        top_k = to_device([seq.params.top_k or vocab for seq in seqs], torch.int64, device)
        top_p = to_device([seq.params.top_p for seq in seqs], torch.float32, device)
        sorted_logits, sorted_index = logits.sort(dim=-1, descending=True)
        ranks = torch.arange(vocab, device=device).unsqueeze(0)
        remove = ranks >= top_k.unsqueeze(1)
        sorted_probs = torch.softmax(sorted_logits.masked_fill(remove, float("-inf")), dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        remove |= mass_before >= top_p.unsqueeze(1)  # the most likely token always stays
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        return torch.full_like(logits, float("-inf")).scatter(1, sorted_index, sorted_logits)

    @staticmethod
    def _logprobs(logprobs: torch.Tensor, sampled: torch.Tensor, seqs: list[Sequence]) -> list[TokenLogprob]:
        """logprobs: [rows, vocab] log-softmax of the raw logits; sampled: [rows] chosen tokens."""
        top_n = max(seq.params.logprobs or 0 for seq in seqs)
        chosen = logprobs.gather(1, sampled.unsqueeze(1)).squeeze(1).tolist()
        sampled_ids = sampled.tolist()
        top_values: list[list[float]] = [[] for _ in seqs]
        top_ids: list[list[int]] = [[] for _ in seqs]
        if top_n:
            values, ids = logprobs.topk(top_n, dim=-1)
            top_values, top_ids = values.tolist(), ids.tolist()
        entries = []
        for row, seq in enumerate(seqs):
            count = seq.params.logprobs or 0
            top = dict(zip(top_ids[row][:count], top_values[row][:count], strict=True))
            entries.append(TokenLogprob(token_id=sampled_ids[row], logprob=chosen[row], top=top))
        return entries
