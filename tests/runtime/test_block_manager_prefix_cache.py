"""BlockManager bookkeeping: allocation, reference counts, prefix-cache hits, LRU eviction."""

from __future__ import annotations

from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import SamplingParams


def seq(tokens: list[int], name: str = "s") -> Sequence:
    return Sequence(name, tokens, SamplingParams(), arrival=0)


def compute(manager: BlockManager, sequence: Sequence) -> None:
    """Pretends the model computed every token of `sequence` (allocating as the engine does)."""
    matched = manager.match_prefix(sequence)
    manager.acquire_prefix(sequence, matched)
    assert manager.allocate(sequence, sequence.num_uncomputed_tokens)
    sequence.num_computed_tokens = sequence.num_tokens
    manager.cache_full_blocks(sequence)


def test_block_manager_allocates_only_what_is_needed_and_frees_everything() -> None:
    manager = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    a = seq(list(range(10)))
    assert manager.allocate(a, 10)
    assert len(a.block_table) == 3 and manager.num_free_blocks == 5
    a.num_computed_tokens = 10
    assert manager.allocate(a, 2)  # positions 10, 11 fit the third block
    assert len(a.block_table) == 3
    assert manager.allocate(a, 3)
    assert len(a.block_table) == 4
    assert manager.usage == 0.5
    manager.free(a)
    assert manager.num_free_blocks == 8 and a.block_table == [] and a.num_computed_tokens == 0


def test_block_manager_refuses_when_out_of_blocks_and_changes_nothing() -> None:
    manager = BlockManager(num_blocks=2, block_size=4, enable_prefix_caching=False)
    a = seq(list(range(12)))
    assert not manager.allocate(a, 12)
    assert a.block_table == [] and manager.num_free_blocks == 2


def test_block_manager_prefix_hits_share_blocks_and_count_tokens() -> None:
    manager = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    first = seq(list(range(10)), "first")
    compute(manager, first)
    second = seq([*range(8), 99, 98, 97], "second")
    matched = manager.match_prefix(second)
    assert matched == first.block_table[:2]
    manager.acquire_prefix(second, matched)
    assert second.num_computed_tokens == 8
    assert manager.ref_counts[matched[0]] == 2
    assert manager.prefix_cache_queries == 10 + 11
    assert manager.prefix_cache_hits == 8


def test_block_manager_never_matches_the_whole_prompt() -> None:
    manager = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    compute(manager, seq(list(range(8)), "first"))
    again = seq(list(range(8)), "again")
    # The last token must be computed to get logits, so only the first block is reused.
    assert len(manager.match_prefix(again)) == 1


def test_block_manager_freed_prefix_survives_until_evicted_least_recently_used_first() -> None:
    manager = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=True)
    old = seq([1, 2, 3, 4, 5], "old")
    compute(manager, old)
    manager.free(old)
    recent = seq([7, 7, 7, 7, 8], "recent")
    compute(manager, recent)
    manager.free(recent)
    assert manager.num_free_blocks == 4 and manager.usage == 0.0
    assert len(manager.match_prefix(seq([1, 2, 3, 4, 0]))) == 1
    # Two fresh blocks: the unhashed tail blocks go first, so both cached prefixes survive.
    filler = seq(list(range(100, 108)), "filler")
    assert manager.allocate(filler, 8)
    assert len(manager.match_prefix(seq([1, 2, 3, 4, 0]))) == 1
    assert len(manager.match_prefix(seq([7, 7, 7, 7, 0]))) == 1
    # One more block evicts the least recently freed prefix ("old"), keeping "recent".
    extra = seq(list(range(200, 204)), "extra")
    assert manager.allocate(extra, 4)
    assert manager.match_prefix(seq([1, 2, 3, 4, 0])) == []
    assert len(manager.match_prefix(seq([7, 7, 7, 7, 0]))) == 1


def test_block_manager_admission_counts_reclaimed_cached_blocks() -> None:
    manager = BlockManager(num_blocks=3, block_size=4, enable_prefix_caching=True)
    cached = seq([1, 2, 3, 4, 5, 6, 7, 8, 9], "cached")
    compute(manager, cached)
    manager.free(cached)
    follower = seq([1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0], "follower")
    matched = manager.match_prefix(follower)
    assert len(matched) == 2
    assert manager.can_admit(matched, new_blocks=1)
    assert not manager.can_admit(matched, new_blocks=2)


def test_block_manager_disabled_prefix_caching_never_matches() -> None:
    manager = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    compute(manager, seq(list(range(9)), "a"))
    assert manager.match_prefix(seq(list(range(9)), "b")) == []
    assert manager.prefix_cache_queries == 0
