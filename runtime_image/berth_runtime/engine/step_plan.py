"""A step's inputs as host arrays: everything a model shard needs to run the step, and nothing about
sequences. The model runner builds one from the scheduled rows on rank 0; with tensor parallelism
the step channel (`berth_runtime.parallel.step_channel`) broadcasts it so every rank runs the same
step on its own shard, and only rank 0 keeps the sequences to sample for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StepPlan:
    """The multi-token rows (prefill chunks, rows with speculative drafts) first, then the
    single-token rows (decodes)."""

    query_lens: np.ndarray
    """[rows] int64 tokens each row computes this step."""
    starts: np.ndarray
    """[rows] int64 tokens of each row already in the cache before the step."""
    block_tables: np.ndarray
    """[rows, max_blocks + 1] int64 each row's block ids, then (last column) its context length
    after the step."""
    per_token: np.ndarray
    """[3, tokens] int64: token ids, positions, cache slots."""
    logits_rows: np.ndarray
    """[logits] int64 the tokens whose hidden states become logits, in the sampler's order."""

    @property
    def num_rows(self) -> int:
        return len(self.query_lens)

    @property
    def decode_only(self) -> bool:
        return bool(self.per_token.shape[1] == self.num_rows)
