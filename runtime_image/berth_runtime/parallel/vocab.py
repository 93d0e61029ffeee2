"""The vocabulary-parallel embedding and output head: each rank holds a contiguous range of the
vocabulary's rows (`ShardLayout.vocab_start`, `local_vocab`), so neither table is ever whole in one
process. A token outside a rank's range embeds to zeros there and the all-reduce sums the one rank
that has it; each rank's logits cover its range and are gathered, padded to one width, into the full
vocabulary (the tied-embedding case reads the embedding's own shard).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from berth_runtime.parallel.group import ShardGroup
from berth_runtime.parallel.sharding import ShardLayout


class VocabParallelEmbedding(nn.Module):
    """tokens: [tokens] -> [tokens, hidden_size], this rank's rows of the table in `weight`."""

    def __init__(self, layout: ShardLayout, group: ShardGroup, hidden_size: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.layout = layout
        self.group = group
        self.weight = nn.Parameter(torch.empty(layout.local_vocab, hidden_size, dtype=dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        local = tokens - self.layout.vocab_start
        inside = (local >= 0) & (local < self.layout.local_vocab)
        if self.layout.local_vocab == 0:  # a vocabulary smaller than the ranks: nothing here
            hidden = self.weight.new_zeros(tokens.shape[0], self.weight.shape[1])
        else:
            hidden = functional.embedding(torch.where(inside, local, 0), self.weight)
            hidden = hidden * inside.unsqueeze(-1).to(hidden.dtype)
        return self.group.all_reduce(hidden)


def vocab_parallel_logits(
    hidden: torch.Tensor, weight: torch.Tensor, layout: ShardLayout, group: ShardGroup
) -> torch.Tensor:
    """hidden: [rows, hidden_size], weight: this rank's [local_vocab, hidden_size] -> [rows, vocab]
    (every rank's range, gathered)."""
    local = hidden @ weight.t()
    padding = layout.vocab_per_rank - local.shape[-1]
    if padding:
        local = functional.pad(local, (0, padding))
    return group.gather_vocab(local, layout.vocab_size)
