"""N-gram prompt lookup: propose the next tokens by copying what followed an earlier match.

Code edits, summaries and extraction repeat long spans of their prompt; when the last ``n`` tokens
already occurred earlier in the prompt or output, the tokens after that occurrence are a cheap and
often right guess. Longer patterns are tried first (``max_ngram`` down to ``min_ngram``) and the
latest occurrence wins, since recent context predicts best. The search is vectorised with numpy:
one pass of ``n`` comparisons over the history per pattern length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def propose_ngram(
    token_ids: Sequence[int] | np.ndarray,
    num_speculative_tokens: int,
    max_ngram: int = 3,
    min_ngram: int = 1,
) -> list[int]:
    """Up to ``num_speculative_tokens`` draft tokens to follow ``token_ids`` (prompt + output so far).

    Empty when no suffix of length ``min_ngram..max_ngram`` occurred earlier. A match's continuation
    stops at the end of the history, so fewer than K tokens may come back.
    """
    if num_speculative_tokens < 0:
        raise ValueError(f"num_speculative_tokens must be >= 0; got {num_speculative_tokens}")
    if not 1 <= min_ngram <= max_ngram:
        raise ValueError(
            f"need 1 <= min_ngram <= max_ngram; got min_ngram {min_ngram}, max_ngram {max_ngram}"
        )
    history = np.asarray(token_ids, dtype=np.int64)
    length = history.shape[0]
    if num_speculative_tokens == 0:
        return []
    for n in range(min(max_ngram, length - 1), min_ngram - 1, -1):
        pattern = history[length - n :]
        # candidate starts 0 .. length - n - 1: the suffix itself (start length - n) is excluded
        windows = sliding_window_view(history[: length - 1], n)
        matches = np.flatnonzero((windows == pattern).all(axis=1))
        if matches.size:
            continuation_start = int(matches[-1]) + n
            return history[continuation_start : continuation_start + num_speculative_tokens].tolist()
    return []


@dataclass(frozen=True)
class NgramProposer:
    """The ``--speculative-method ngram`` settings, validated once; ``propose`` is pure."""

    num_speculative_tokens: int
    max_ngram: int = 3
    min_ngram: int = 1

    def __post_init__(self) -> None:
        if self.num_speculative_tokens < 1:
            raise ValueError(
                f"num_speculative_tokens must be >= 1 for the ngram method; got {self.num_speculative_tokens}"
            )
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(
                "need 1 <= min_ngram <= max_ngram; "
                f"got min_ngram {self.min_ngram}, max_ngram {self.max_ngram}"
            )

    def propose(self, token_ids: Sequence[int] | np.ndarray, limit: int | None = None) -> list[int]:
        """Drafts for one sequence; ``limit`` caps them further (e.g. tokens left before max_tokens)."""
        count = (
            self.num_speculative_tokens if limit is None else max(0, min(limit, self.num_speculative_tokens))
        )
        return propose_ngram(token_ids, count, self.max_ngram, self.min_ngram)
