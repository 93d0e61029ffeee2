"""Scheduler bookkeeping: decodes first, chunked prefill under the token budget, the batch-size
limit, preemption of the most recently admitted sequence, and freeing on finish."""

from __future__ import annotations

import random

from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.scheduler import ScheduledRow, Scheduler
from berth_runtime.engine.sequence import Sequence, SequenceStatus
from berth_runtime.sampling_params import SamplingParams


def make_scheduler(num_blocks: int = 64, batch: int = 8, budget: int = 32) -> Scheduler:
    return Scheduler(BlockManager(num_blocks, block_size=4, enable_prefix_caching=False), batch, budget)


def add(scheduler: Scheduler, name: str, length: int, arrival: int = 0) -> Sequence:
    sequence = Sequence(name, list(range(1, length + 1)), SamplingParams(), arrival=arrival)
    scheduler.add(sequence)
    return sequence


def finish_step(rows: list[ScheduledRow]) -> None:
    """What the engine does after a step: mark tokens computed, and sample for complete rows."""
    for row in rows:
        row.seq.num_computed_tokens += row.num_new_tokens
        if row.seq.num_uncomputed_tokens == 0:
            row.seq.token_ids.append(0)


def plan(rows: list[ScheduledRow]) -> list[tuple[str, int]]:
    return [(row.seq.request_id, row.num_new_tokens) for row in rows]


def test_scheduler_chunks_a_long_prompt_and_keeps_decodes_running() -> None:
    scheduler = make_scheduler(budget=10)
    add(scheduler, "short", 3)
    rows = scheduler.schedule()
    assert plan(rows) == [("short", 3)]
    finish_step(rows)
    add(scheduler, "long", 25)
    steps = []
    for _ in range(3):
        rows = scheduler.schedule()
        steps.append(plan(rows))
        finish_step(rows)
    # The decode goes first each step; the prompt takes the rest of the budget, in chunks.
    assert steps == [[("short", 1), ("long", 9)], [("short", 1), ("long", 9)], [("short", 1), ("long", 7)]]


def test_scheduler_respects_the_batch_size() -> None:
    scheduler = make_scheduler(batch=2)
    for index in range(3):
        add(scheduler, f"s{index}", 4)
    assert [name for name, _ in plan(scheduler.schedule())] == ["s0", "s1"]
    assert len(scheduler.waiting) == 1


def test_scheduler_preempts_the_latest_sequence_when_blocks_run_out() -> None:
    scheduler = make_scheduler(num_blocks=4, budget=64)
    first = add(scheduler, "first", 8, arrival=0)
    second = add(scheduler, "second", 8, arrival=1)
    rows = scheduler.schedule()
    assert plan(rows) == [("first", 8), ("second", 8)]
    finish_step(rows)
    # Both need a third block now; only the earlier one gets it, the later one is recomputed later.
    rows = scheduler.schedule()
    assert plan(rows) == [("first", 1)]
    assert scheduler.num_preemptions == 1
    assert second.status is SequenceStatus.WAITING and second.num_computed_tokens == 0
    assert second.block_table == [] and scheduler.waiting[0] is second
    assert first.status is SequenceStatus.RUNNING


def test_scheduler_finish_frees_blocks_and_admits_the_next() -> None:
    scheduler = make_scheduler(num_blocks=2)
    first = add(scheduler, "first", 8)
    add(scheduler, "second", 8)
    assert plan(scheduler.schedule()) == [("first", 8)]
    scheduler.finish(first, "abort")
    assert first.status is SequenceStatus.FINISHED and first.finish_reason == "abort"
    assert scheduler.block_manager.num_free_blocks == 2
    assert plan(scheduler.schedule()) == [("second", 8)]


def test_scheduler_waiting_request_does_not_start_without_room() -> None:
    scheduler = make_scheduler(num_blocks=3)
    add(scheduler, "big", 11)
    add(scheduler, "next", 4)
    rows = scheduler.schedule()
    assert plan(rows) == [("big", 11)]  # "next" needs a block and all three are taken
    finish_step(rows)
    assert plan(scheduler.schedule()) == [("big", 1)]
    assert scheduler.waiting[0].request_id == "next"
    assert scheduler.num_preemptions == 0


def test_scheduler_a_readmitted_older_sequence_is_not_preempted_before_newer_ones() -> None:
    scheduler = make_scheduler(num_blocks=5, budget=64)
    old = add(scheduler, "old", 8, arrival=0)
    scheduler.schedule()
    old.num_computed_tokens = 8
    scheduler.finish(old, "abort")  # stand-in for a preemption: old comes back later, behind "new"
    new = add(scheduler, "new", 8, arrival=5)
    old_again = add(scheduler, "old-again", 8, arrival=0)
    rows = scheduler.schedule()
    assert [seq.request_id for seq in scheduler.running] == ["old-again", "new"]
    finish_step(rows)
    add(scheduler, "later", 4, arrival=9)
    # Both running need a third block; only one is free: the newest arrival ("new") is preempted.
    assert plan(scheduler.schedule()) == [("old-again", 1)]
    assert new.status is SequenceStatus.WAITING and old_again.status is SequenceStatus.RUNNING


def test_scheduler_bookkeeping_stays_consistent_under_random_load() -> None:
    """Random arrivals, finishes and aborts with prefix caching and a small cache: every step, block
    references equal the block tables that hold them, shared blocks are full cached prefix blocks,
    no step exceeds its budgets, and every request finishes."""
    rng = random.Random(0)
    manager = BlockManager(num_blocks=14, block_size=4, enable_prefix_caching=True)
    scheduler = Scheduler(manager, max_num_seqs=5, max_num_batched_tokens=12)
    prefixes = [[rng.randrange(100) for _ in range(rng.randrange(1, 12))] for _ in range(3)]
    targets: dict[str, int] = {}
    finished: set[str] = set()
    arrivals = 0
    for _ in range(400):
        if arrivals < 40 and rng.random() < 0.5:
            prompt = rng.choice(prefixes) + [rng.randrange(100) for _ in range(rng.randrange(1, 10))]
            scheduler.add(Sequence(f"s{arrivals}", prompt, SamplingParams(), arrival=arrivals))
            targets[f"s{arrivals}"] = rng.randrange(1, 12)
            arrivals += 1
        rows = scheduler.schedule()
        assert len(rows) <= 5 and sum(row.num_new_tokens for row in rows) <= 12
        finish_step(rows)
        for row in rows:
            manager.cache_full_blocks(row.seq)
            seq = row.seq
            if seq.num_output_tokens >= targets[seq.request_id] or (
                seq.num_uncomputed_tokens and rng.random() < 0.02
            ):
                scheduler.finish(seq, "length")
                finished.add(seq.request_id)
        holders: dict[int, int] = {}
        for seq in scheduler.running:
            for block_id in seq.block_table:
                holders[block_id] = holders.get(block_id, 0) + 1
        assert all(not seq.block_table for seq in scheduler.waiting)
        assert {b: c for b, c in enumerate(manager.ref_counts) if c} == holders
        assert manager.num_free_blocks == manager.num_blocks - len(holders)
    assert finished == set(targets)
    assert manager.num_free_blocks == manager.num_blocks
    assert scheduler.num_preemptions > 0 and manager.prefix_cache_hits > 0
