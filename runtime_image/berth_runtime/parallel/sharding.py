"""Which slice of each weight a rank holds (Megatron-style), and whether a model can be split at all.

Pure arithmetic over the model's head counts, so the start-up check (`check_tensor_parallel`) runs
from config.json alone, before any weight is read: a model that cannot be split exits 2 with the
tensor-parallel sizes it does allow instead of failing half-way through loading.

Query heads and the MLP's intermediate columns divide evenly across ranks. KV heads divide too when
there are at least as many as ranks; with fewer, each rank keeps the one KV head its query heads
attend to (replicated on N / kv_heads ranks), so grouped-query attention stays local to a rank. The
vocabulary is cut into equal ceil(vocab / N) row ranges; the last rank's may be shorter.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_TENSOR_PARALLEL_SIZE = 16
"""The CRD's upper bound for runtime.tensorParallelSize."""


@dataclass(frozen=True)
class ShardLayout:
    """Rank `rank` of `world_size`: its heads, intermediate columns and vocabulary rows."""

    rank: int
    world_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int

    @property
    def local_heads(self) -> int:
        return self.num_heads // self.world_size

    @property
    def local_kv_heads(self) -> int:
        return max(1, self.num_kv_heads // self.world_size)

    @property
    def head_start(self) -> int:
        """This rank's first query head."""
        return self.rank * self.local_heads

    @property
    def kv_head_start(self) -> int:
        """This rank's first KV head (with fewer KV heads than ranks: the one its queries share)."""
        return self.rank * self.num_kv_heads // self.world_size

    @property
    def local_intermediate(self) -> int:
        return self.intermediate_size // self.world_size

    @property
    def vocab_per_rank(self) -> int:
        """Rows of every rank's vocabulary range but the last's, and the gathered logits' width per rank."""
        return -(-self.vocab_size // self.world_size)

    @property
    def vocab_start(self) -> int:
        return min(self.rank * self.vocab_per_rank, self.vocab_size)

    @property
    def local_vocab(self) -> int:
        """Rows this rank holds (the last rank's range may be shorter, or empty for a tiny vocab)."""
        return min(self.vocab_per_rank, self.vocab_size - self.vocab_start)


def split_problem(world_size: int, num_heads: int, num_kv_heads: int, intermediate_size: int) -> str | None:
    """Why the model's heads or MLP cannot be split over `world_size` ranks; None when they can."""
    if num_heads % world_size:
        return f"{num_heads} attention heads do not divide by {world_size}"
    if num_kv_heads % world_size and world_size % num_kv_heads:
        return f"{num_kv_heads} KV heads neither divide by {world_size} nor divide it"
    if intermediate_size % world_size:
        return f"the MLP's intermediate size {intermediate_size} does not divide by {world_size}"
    return None


def allowed_sizes(num_heads: int, num_kv_heads: int, intermediate_size: int) -> list[int]:
    """The tensor-parallel sizes (1..16) this model can be split over."""
    return [
        size
        for size in range(1, MAX_TENSOR_PARALLEL_SIZE + 1)
        if split_problem(size, num_heads, num_kv_heads, intermediate_size) is None
    ]


def check_tensor_parallel(world_size: int, num_heads: int, num_kv_heads: int, intermediate_size: int) -> None:
    """ValueError naming the model's head counts and the sizes it allows, if `world_size` does not fit."""
    problem = split_problem(world_size, num_heads, num_kv_heads, intermediate_size)
    if problem is None:
        return
    accepted = ", ".join(str(size) for size in allowed_sizes(num_heads, num_kv_heads, intermediate_size))
    raise ValueError(
        f"invalid tensor_parallel_size={world_size} (--tensor-parallel-size): this model has "
        f"{num_heads} attention heads and {num_kv_heads} KV heads (intermediate size "
        f"{intermediate_size}), and {problem}; accepted values for this model: {accepted}"
    )


@dataclass(frozen=True)
class SourceSlice:
    """A part of a checkpoint tensor one rank reads: `length` indices from `start` along `dim`."""

    dim: int
    start: int
    length: int

    def shifted(self, offset: int) -> SourceSlice:
        """The same slice of a part that starts `offset` in (q, k, v of a fused tensor)."""
        return SourceSlice(self.dim, self.start + offset, self.length)
