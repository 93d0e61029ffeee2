"""The paged KV cache's bookkeeping: which block holds which tokens, who references it, and which
unreferenced blocks still hold reusable prefixes (prefix caching).

A full block is identified by a chained hash of its tokens and of every token before it, so equal
hashes mean equal prefixes (each hit also compares the block's tokens and its parent's hash, so a
colliding hash is a miss, not a wrong answer). Freed blocks that carry a hash stay in the cache,
least recently used first in line for eviction; blocks without one are reused first. Pure CPU
bookkeeping: no tensors here.
"""

from __future__ import annotations

from collections import OrderedDict

from berth_runtime.engine.sequence import Sequence


def _blocks_for(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self._block_hash: list[int | None] = [None] * num_blocks
        # (parent hash, tokens) each cached block was registered with, compared on every hit.
        self._block_key: list[tuple[int | None, tuple[int, ...]] | None] = [None] * num_blocks
        self._cached: dict[int, int] = {}  # prefix hash -> block id
        # Unreferenced blocks; the first is reused (and its cached prefix evicted) first.
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Share of blocks referenced by sequences (cached-but-free blocks count as free)."""
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        """Blocks `seq` must gain to hold the KV of `num_new_tokens` more tokens."""
        total = _blocks_for(seq.num_computed_tokens + num_new_tokens, self.block_size)
        return max(total - len(seq.block_table), 0)

    def _hash_block(self, parent: int | None, tokens: tuple[int, ...]) -> int:
        return hash((parent, tokens))

    def match_prefix(self, seq: Sequence) -> list[int]:
        """Cached blocks holding a prefix of `seq`'s tokens (no side effects). At least one token is
        always left to compute, since the step that computes it produces the next token's logits."""
        if not self.enable_prefix_caching:
            return []
        matched: list[int] = []
        parent: int | None = None
        size = self.block_size
        for index in range((seq.num_tokens - 1) // size):
            tokens = tuple(seq.token_ids[index * size : (index + 1) * size])
            block_hash = self._hash_block(parent, tokens)
            block_id = self._cached.get(block_hash)
            if block_id is None or self._block_key[block_id] != (parent, tokens):
                break
            matched.append(block_id)
            parent = block_hash
        return matched

    def can_admit(self, matched: list[int], new_blocks: int) -> bool:
        """Whether acquiring `matched` and allocating `new_blocks` more fits in the free blocks."""
        reclaimed = sum(1 for block_id in matched if self.ref_counts[block_id] == 0)
        return reclaimed + new_blocks <= len(self._free)

    def acquire_prefix(self, seq: Sequence, matched: list[int]) -> None:
        """Gives a sequence with no blocks the `matched` cached prefix; counts the lookup."""
        for block_id in matched:
            if self.ref_counts[block_id] == 0:
                del self._free[block_id]
            self.ref_counts[block_id] += 1
        seq.block_table = list(matched)
        seq.block_hashes = [h for h in (self._block_hash[block_id] for block_id in matched) if h is not None]
        seq.num_computed_tokens = len(matched) * self.block_size
        if self.enable_prefix_caching:
            self.prefix_cache_queries += seq.num_tokens
            self.prefix_cache_hits += seq.num_computed_tokens

    def allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Appends blocks so `seq` can store `num_new_tokens` more tokens; False (nothing changed) if
        there are not enough free blocks."""
        needed = self.blocks_needed(seq, num_new_tokens)
        if needed > len(self._free):
            return False
        for _ in range(needed):
            block_id, _ = self._free.popitem(last=False)
            self._evict(block_id)
            self.ref_counts[block_id] = 1
            seq.block_table.append(block_id)
        return True

    def _evict(self, block_id: int) -> None:
        block_hash = self._block_hash[block_id]
        if block_hash is not None:
            if self._cached.get(block_hash) == block_id:
                del self._cached[block_hash]
            self._block_hash[block_id] = None
            self._block_key[block_id] = None

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Registers the blocks of `seq` that became full of computed tokens, for reuse by others."""
        if not self.enable_prefix_caching:
            return
        size = self.block_size
        full = seq.num_computed_tokens // size
        for index in range(len(seq.block_hashes), full):
            tokens = tuple(seq.token_ids[index * size : (index + 1) * size])
            parent = seq.block_hashes[-1] if seq.block_hashes else None
            block_hash = self._hash_block(parent, tokens)
            seq.block_hashes.append(block_hash)
            block_id = seq.block_table[index]
            if block_hash not in self._cached and self._block_hash[block_id] is None:
                self._cached[block_hash] = block_id
                self._block_hash[block_id] = block_hash
                self._block_key[block_id] = (parent, tokens)

    def trim(self, seq: Sequence) -> None:
        """Frees the blocks past those holding `seq`'s tokens (the tail rejected drafts occupied)."""
        keep = _blocks_for(seq.num_tokens, self.block_size)
        tail = seq.block_table[keep:]
        del seq.block_table[keep:]
        self._release(tail)

    def _release(self, block_ids: list[int]) -> None:
        for block_id in reversed(block_ids):
            self.ref_counts[block_id] -= 1
            if self.ref_counts[block_id] == 0:
                self._free[block_id] = None
                if self._block_hash[block_id] is None:
                    self._free.move_to_end(block_id, last=False)

    def free(self, seq: Sequence) -> None:
        """Drops `seq`'s references (tail first, so its tail is evicted before its shared prefix)."""
        self._release(seq.block_table)
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
