"""N-gram speculative decoding inside the engine step (``--speculative-method ngram``).

Before scheduling, every greedy sequence that is decoding gets up to K draft tokens from prompt
lookup (`NgramProposer`); the scheduler runs its last token plus the drafts as one multi-token row
(the prefill attention path, over the cache like a chunk), so one forward pass scores all K+1
positions. The greedy acceptance rule keeps the drafts the model agrees with and adds the model's
own next token, so the output is exactly what plain greedy decoding produces, 1..K+1 tokens a pass.
Rejected drafts' KV is simply left in the blocks past the sequence's length (overwritten later);
the engine rolls `num_computed_tokens` back and frees blocks no real token uses.

Greedy requests with `logit_bias` or penalties speculate too: the sampler judges the row after
draft j with drafts 0..j counted as output (`engine.penalties`), so drafts are verified against the
same processed distribution plain decoding samples from. Sampled requests (temperature > 0),
requests asking for logprobs and requests still under `min_tokens` (whose end tokens are masked per
position) decode one token a step as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from berth_runtime.engine.sequence import Sequence
from berth_runtime.speculative import NgramProposer, accept_greedy


class NgramSpeculator:
    def __init__(self, proposer: NgramProposer, max_model_len: int) -> None:
        self.proposer = proposer
        self.max_model_len = max_model_len
        self.num_draft_tokens = 0
        """Cumulative drafts scored by the model (vllm:spec_decode_num_draft_tokens)."""
        self.num_accepted_tokens = 0
        """Cumulative drafts the model agreed with (vllm:spec_decode_num_accepted_tokens)."""

    def can_speculate(self, seq: Sequence) -> bool:
        params = seq.params
        return (
            params.is_greedy
            and params.logprobs is None
            and seq.num_output_tokens >= params.min_tokens
            and seq.num_uncomputed_tokens == 1
        )

    def propose(self, seqs: Iterable[Sequence]) -> None:
        """Sets `draft_token_ids` of each of `seqs` (empty where it cannot speculate)."""
        for seq in seqs:
            if not self.can_speculate(seq):
                seq.draft_token_ids = []
                continue
            # The model's own token always follows the drafts: leave room for it.
            tokens_left = min(
                seq.params.max_tokens - seq.num_output_tokens, self.max_model_len - seq.num_tokens
            )
            seq.draft_token_ids = self.proposer.propose(seq.token_ids, limit=tokens_left - 1)

    def accept(self, seq: Sequence, target_token_ids: list[int]) -> list[int]:
        """The tokens `seq` gains from a pass over its drafts (`target_token_ids`: the model's greedy
        token at each of the 1 + drafts positions); counts drafts and accepted drafts."""
        drafts = seq.draft_token_ids
        accepted = accept_greedy(drafts, target_token_ids)
        self.num_draft_tokens += len(drafts)
        self.num_accepted_tokens += len(accepted) - 1
        return accepted
