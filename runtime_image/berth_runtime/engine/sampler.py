"""Turns a step's logits into one token per sampling row, each with its own request's parameters.

First the request-dependent processors (`process`, in place): end tokens masked until
`min_tokens`, then `logit_bias` and the repetition, frequency and presence penalties
(`engine.penalties`), then the grammar's mask of a structured-output request (`engine.grammar`). Greedy rows
take the argmax of that; the others go through temperature, top-k, top-p and min-p (`transformers`'
warper order) as batched tensor ops over all rows, and random choice uses the exponential race
(argmax of p / q, q ~ Exp(1)), which equals sampling from p and lets a seeded request draw from its
own generator while the others share one. A processor no row asks for costs nothing, and rows that
do not ask for one are never written. Logprobs are those of the raw logits. The token ids (and
requested logprobs) are the only device reads.
"""

from __future__ import annotations

import torch

from berth_runtime.engine.grammar import apply_grammar_masks, prefetch_grammar_masks
from berth_runtime.engine.host_to_device import to_device
from berth_runtime.engine.outputs import TokenLogprob
from berth_runtime.engine.penalties import apply_logit_bias, apply_penalties
from berth_runtime.engine.sequence import Sequence


class Sampler:
    def __init__(self, eos_token_ids: tuple[int, ...], generator: torch.Generator) -> None:
        self.eos_token_ids = eos_token_ids
        self.generator = generator
        """Shared random stream for requests without a seed."""

    @torch.inference_mode()
    def __call__(
        self, logits: torch.Tensor, seqs: list[Sequence], drafts_before: list[int] | None = None
    ) -> tuple[list[int], list[TokenLogprob | None]]:
        """logits: [rows, vocab] fp32, one row per entry of `seqs` (overwritten by the processors).
        A sequence scoring speculative drafts has one row per position: `drafts_before[row]` of its
        drafts precede that row's token (all zero when None)."""
        rows = logits.shape[0]
        device = logits.device
        want_logprobs = [index for index, seq in enumerate(seqs) if seq.params.logprobs is not None]
        raw_logprobs = torch.log_softmax(logits[want_logprobs], dim=-1) if want_logprobs else None
        logits = self.process(logits, seqs, drafts_before or [0] * rows)

        greedy = all(seq.params.is_greedy for seq in seqs)
        if greedy:
            sampled = logits.argmax(dim=-1)
        else:
            probs = self.probabilities(logits, seqs)
            noise = torch.empty_like(probs).exponential_(generator=self.generator)
            for index, seq in enumerate(seqs):
                if seq.generator is not None:
                    noise[index].exponential_(generator=seq.generator)
            random_choice = (probs / noise).argmax(dim=-1)
            is_greedy = to_device([seq.params.is_greedy for seq in seqs], torch.bool, device)
            sampled = torch.where(is_greedy, logits.argmax(dim=-1), random_choice)

        token_ids: list[int] = sampled.tolist()
        prefetch_grammar_masks(seqs, token_ids, logits.shape[1])  # the next step's, during its forward pass
        logprobs: list[TokenLogprob | None] = [None] * rows
        if raw_logprobs is not None:
            logprobs_of = self._logprobs(
                raw_logprobs, sampled[want_logprobs], [seqs[i] for i in want_logprobs]
            )
            for index, entry in zip(want_logprobs, logprobs_of, strict=True):
                logprobs[index] = entry
        return token_ids, logprobs

    @torch.inference_mode()
    def process(self, logits: torch.Tensor, seqs: list[Sequence], drafts_before: list[int]) -> torch.Tensor:
        """`logits` after the request-dependent processors (min_tokens, logit_bias, penalties, grammar),
        processed in place: a step's logits are used once, and a copy would cost a pass over them."""
        if any(self._needs_processing(seq) for seq in seqs):
            logits = logits.contiguous()  # the penalties index the flattened logits
            self._mask_end_tokens(logits, seqs)
            apply_logit_bias(logits, seqs)
            apply_penalties(logits, seqs, drafts_before)
            apply_grammar_masks(logits, seqs, drafts_before)
        return logits

    def probabilities(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        """[rows, vocab] the distribution sampled rows draw from (rows need not sum to 1): processed
        logits through temperature, top-k, top-p, then min-p."""
        temperatures = to_device(
            [seq.params.temperature or 1.0 for seq in seqs], torch.float32, logits.device
        )
        scaled = self._top_k_top_p(logits / temperatures.unsqueeze(1), seqs, logits.shape[1])
        probs = torch.softmax(scaled, dim=-1)
        if all(seq.params.min_p == 0 for seq in seqs):
            return probs
        min_p = to_device([seq.params.min_p for seq in seqs], torch.float32, logits.device)
        # min_p <= 1: the most likely token always stays
        return probs.masked_fill(probs < min_p.unsqueeze(1) * probs.amax(dim=-1, keepdim=True), 0.0)

    @staticmethod
    def _needs_processing(seq: Sequence) -> bool:
        params = seq.params
        return (
            seq.num_output_tokens < params.min_tokens
            or bool(params.logit_bias)
            or params.has_penalties
            or params.grammar is not None
        )

    def _mask_end_tokens(self, logits: torch.Tensor, seqs: list[Sequence]) -> None:
        """Forbids, in place, EOS and stop token ids for sequences that have not reached min_tokens."""
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
        if row_index:
            logits[
                to_device(row_index, torch.int64, logits.device),
                to_device(token_index, torch.int64, logits.device),
            ] = float("-inf")

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
