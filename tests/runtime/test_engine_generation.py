"""Greedy generation through the whole engine is identical, token for token, to `transformers`:
concurrently (batching changes nothing), with prefix-cache hits, under preemption forced by a tiny
KV cache, and with chunked prefill; an aborted request frees its blocks at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from engine_reference import (
    engine_config,
    generate_greedy,
    generated_tokens,
    greedy,
    make_engine,
    make_prompts,
    reference_greedy,
    run_to_completion,
)

from berth_runtime.engine.async_engine import AsyncEngine
from berth_runtime.engine.errors import EngineFailed, EngineNotRunning, PromptTooLong, QueueFull
from berth_runtime.engine.model_runner import StepResult
from berth_runtime.engine.scheduler import ScheduledRow

MAX_NEW = 12


@pytest.fixture(scope="module")
def prompts(tiny_llama_dir: Path) -> list[list[int]]:
    return make_prompts(18, vocab_size=320)


@pytest.fixture(scope="module")
def expected(tiny_llama_dir: Path, prompts: list[list[int]]) -> list[list[int]]:
    return reference_greedy(tiny_llama_dir, prompts, MAX_NEW)


async def test_engine_concurrent_greedy_generations_match_transformers(
    tiny_llama_dir: Path, prompts: list[list[int]], expected: list[list[int]]
) -> None:
    engine = AsyncEngine.from_config(engine_config(tiny_llama_dir))
    await engine.start()
    try:

        async def collect(index: int) -> list[int]:
            stream = engine.generate(prompts[index], greedy(MAX_NEW), f"r{index}")
            outputs = [output async for output in stream]
            assert outputs[-1].finished and outputs[-1].finish_reason == "length"
            assert outputs[-1].completion_tokens == MAX_NEW
            assert outputs[-1].prompt_tokens == len(prompts[index])
            return generated_tokens(outputs)

        results = await asyncio.gather(*(collect(index) for index in range(len(prompts))))
    finally:
        await engine.stop()
    assert results == expected


def test_engine_prefix_cache_hits_give_the_same_tokens(tiny_llama_dir: Path) -> None:
    shared = make_prompts(1, vocab_size=320, seed=7, min_len=30, max_len=30)[0]
    tails = make_prompts(6, vocab_size=320, seed=8, min_len=2, max_len=9)
    prompts = [shared + tail[1:] for tail in tails]
    expected = reference_greedy(tiny_llama_dir, prompts, MAX_NEW)
    engine = make_engine(tiny_llama_dir, enable_prefix_caching=True)
    engine.add_request("first", prompts[0], greedy(MAX_NEW))
    results = {"first": generated_tokens(run_to_completion(engine)["first"])}
    assert engine.block_manager.prefix_cache_hits == 0
    for index, prompt in enumerate(prompts[1:], start=1):
        engine.add_request(f"r{index}", prompt, greedy(MAX_NEW))
    for request_id, outputs in run_to_completion(engine).items():
        results[request_id] = generated_tokens(outputs)
    assert [results["first"]] + [results[f"r{index}"] for index in range(1, len(prompts))] == expected
    # Each later prompt finds the shared 30 tokens' 7 full blocks of 4 tokens in the cache.
    assert engine.stats().prefix_cache_hits >= 28 * (len(prompts) - 1)
    assert engine.stats().prefix_cache_queries == sum(len(prompt) for prompt in prompts)


def test_engine_preemption_by_recompute_gives_the_same_tokens(
    tiny_llama_dir: Path, prompts: list[list[int]], expected: list[list[int]]
) -> None:
    # 64-token context in blocks of 4 needs 16 blocks; 24 blocks cannot hold 18 sequences at once.
    engine = make_engine(tiny_llama_dir, max_model_len=64, kv_cache_blocks=24)
    assert generate_greedy(engine, prompts, MAX_NEW) == expected
    assert engine.stats().num_preemptions > 0
    assert engine.block_manager.num_free_blocks == 24


def test_engine_chunked_prefill_gives_the_same_tokens(
    tiny_llama_dir: Path, prompts: list[list[int]], expected: list[list[int]]
) -> None:
    engine = make_engine(tiny_llama_dir, max_num_batched_tokens=7)
    for index, prompt in enumerate(prompts):
        engine.add_request(f"r{index}", prompt, greedy(MAX_NEW))
    schedule = engine.scheduler.schedule
    steps: list[list[int]] = []  # tokens per row, per step

    def recording_schedule() -> list[ScheduledRow]:
        rows = schedule()
        steps.append([row.num_new_tokens for row in rows])
        return rows

    engine.scheduler.schedule = recording_schedule  # type: ignore[method-assign]
    outputs = run_to_completion(engine)
    assert [generated_tokens(outputs[f"r{index}"]) for index in range(len(prompts))] == expected
    assert max(sum(step) for step in steps) <= 7
    # Prompts longer than the budget were prefilled over several steps, next to running decodes.
    assert any(len(step) > 1 and 1 in step and max(step) > 1 for step in steps)


async def test_engine_abort_frees_blocks_at_once(tiny_llama_dir: Path) -> None:
    engine = AsyncEngine.from_config(engine_config(tiny_llama_dir))
    await engine.start()
    try:
        stream = engine.generate(list(range(4, 40)), greedy(400), "long")
        first = await anext(stream)
        assert not first.finished
        assert engine.engine.block_manager.usage > 0
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(200):
            if engine.stats().num_running == 0 and engine.stats().kv_cache_usage == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.stats().num_running == 0
        assert engine.stats().kv_cache_usage == 0
    finally:
        await engine.stop()


async def test_engine_refuses_too_long_prompts_and_a_full_queue(tiny_llama_dir: Path) -> None:
    engine = AsyncEngine.from_config(engine_config(tiny_llama_dir, max_model_len=32, max_queue=2))
    await engine.start()
    try:
        with pytest.raises(PromptTooLong, match="32"):
            engine.generate(list(range(4, 36)), greedy(4), "too-long")
        with pytest.raises(PromptTooLong):
            engine.generate(list(range(4, 30)), greedy(10, min_tokens=8), "min-too-long")
        streams = [engine.generate([0, 5, 6], greedy(4), f"q{index}") for index in range(2)]
        with pytest.raises(QueueFull, match="2"):
            engine.generate([0, 5, 6], greedy(4), "overflow")
        for stream in streams:
            assert [output async for output in stream][-1].finished
    finally:
        await engine.stop()


async def test_engine_stop_ends_streams_in_flight_with_abort(tiny_llama_dir: Path) -> None:
    engine = AsyncEngine.from_config(engine_config(tiny_llama_dir))
    await engine.start()
    stream = engine.generate(list(range(4, 20)), greedy(400), "in-flight")
    assert not (await anext(stream)).finished
    await engine.stop()
    remaining = [output async for output in stream]
    assert remaining[-1].finished and remaining[-1].finish_reason == "abort"
    assert engine.stats().num_running == 0 and engine.stats().kv_cache_usage == 0
    with pytest.raises(EngineNotRunning):
        engine.generate([0, 5], greedy(2), "after-stop")


async def test_engine_failed_step_fails_requests_in_flight_and_keeps_serving(tiny_llama_dir: Path) -> None:
    engine = AsyncEngine.from_config(engine_config(tiny_llama_dir))
    run = engine.engine.runner.run
    calls = 0

    def fail_once(rows: list[ScheduledRow]) -> StepResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("device fell over")
        return run(rows)

    engine.engine.runner.run = fail_once  # type: ignore[method-assign]
    await engine.start()
    try:
        with pytest.raises(EngineFailed, match="device fell over"):
            [output async for output in engine.generate([0, 5, 6], greedy(3), "doomed")]
        assert engine.stats().kv_cache_usage == 0
        outputs = [output async for output in engine.generate([0, 5, 6], greedy(3), "next")]
        assert outputs[-1].finish_reason == "length"
    finally:
        await engine.stop()


def test_engine_qwen2_batched_greedy_matches_transformers(tiny_qwen2_dir: Path) -> None:
    prompts = make_prompts(16, vocab_size=320, seed=3)
    expected = reference_greedy(tiny_qwen2_dir, prompts, 8)
    engine = make_engine(tiny_qwen2_dir, enable_prefix_caching=True, max_num_batched_tokens=64)
    assert generate_greedy(engine, prompts, 8) == expected
