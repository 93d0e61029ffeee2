"""Speculative decoding without a draft model (``--speculative-method ngram``).

``ngram`` proposes up to K next tokens by prompt lookup: find the latest earlier occurrence of the
sequence's last n tokens and copy what followed it. ``acceptance`` decides, after one target-model
pass over the K drafts, which tokens the sequence keeps; under greedy sampling the result is exactly
what K+1 ordinary decode steps would have produced.
"""

from berth_runtime.speculative.acceptance import accept_greedy, accept_greedy_batch
from berth_runtime.speculative.ngram import NgramProposer, propose_ngram

__all__ = ["NgramProposer", "accept_greedy", "accept_greedy_batch", "propose_ngram"]
