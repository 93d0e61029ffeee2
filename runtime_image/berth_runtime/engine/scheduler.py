"""Continuous batching: decides, every step, which sequences run and how many tokens each computes.

Running sequences go first (so decodes are never stalled by a long prompt), each taking what it
still needs from the per-step token budget; a prompt larger than the remaining budget is prefilled
in chunks over several steps. When the KV cache runs out, the most recently admitted running
sequence (latest arrival) is preempted: its blocks are freed and it returns to the front of the queue, to be
recomputed later (prefix caching may give much of it back). Waiting sequences are admitted in
arrival order while the budget, the batch size and the cache allow. A running sequence's
speculative drafts ride along with its last token when budget and free blocks allow (see
`engine.speculation`). Pure bookkeeping.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledRow:
    seq: Sequence
    num_new_tokens: int
    """Tokens computed for `seq` in this step, starting at seq.num_computed_tokens."""


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        """In arrival order (oldest first)."""
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Marks `seq` finished, takes it out of the batch and frees its blocks at once."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.draft_token_ids = []
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def _num_new_with_drafts(self, seq: Sequence, budget: int) -> int:
        """Tokens `seq` computes this step: what it still needs, plus its speculative drafts as far
        as the budget and the free blocks allow (drafts never cause a preemption)."""
        needed = seq.num_uncomputed_tokens
        drafts = seq.draft_token_ids[: max(budget - needed, 0)]
        if drafts and self.block_manager.blocks_needed(seq, needed + len(drafts)) > (
            self.block_manager.num_free_blocks
        ):
            drafts = []
        seq.draft_token_ids = drafts
        return min(needed + len(drafts), budget)

    def schedule(self) -> list[ScheduledRow]:
        budget = self.max_num_batched_tokens
        rows: list[ScheduledRow] = []
        preempted = False
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            num_new = self._num_new_with_drafts(seq, budget)
            while not self.block_manager.allocate(seq, num_new):
                victim = self.running.pop()
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            if seq.status is SequenceStatus.RUNNING:
                rows.append(ScheduledRow(seq, num_new))
                budget -= num_new
                index += 1
        if preempted:
            return rows
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            matched = self.block_manager.match_prefix(seq)
            num_cached = len(matched) * self.block_manager.block_size
            num_new = min(seq.num_tokens - num_cached, budget)
            size = self.block_manager.block_size
            new_blocks = -(-(num_cached + num_new) // size) - len(matched)
            if not self.block_manager.can_admit(matched, new_blocks):
                break
            self.waiting.popleft()
            self.block_manager.acquire_prefix(seq, matched)
            self.block_manager.allocate(seq, num_new)
            seq.status = SequenceStatus.RUNNING
            # Kept in arrival order, so the latest arrival is last: the first to be preempted.
            bisect.insort(self.running, seq, key=lambda running: running.arrival)
            rows.append(ScheduledRow(seq, num_new))
            budget -= num_new
        return rows
