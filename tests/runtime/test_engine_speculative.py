"""`--speculative-method ngram`: greedy output through the engine is token for token what the same
engine produces without speculation (repetitive and random prompts, all in one batch, with prefix
caching, with a tight KV cache), drafts are counted and really accepted, rejected drafts leave no
blocks behind, and sampled requests beside speculating ones still decode."""

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
    run_to_completion,
)

from berth_runtime.engine.async_engine import AsyncEngine
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.sampling_params import SamplingParams

MAX_NEW = 24
SPECULATION = {"speculative_method": "ngram", "num_speculative_tokens": 4}


def repetitive_prompts() -> list[list[int]]:
    """Code-edit-like prompts: spans that repeat, so the continuation often copies earlier text."""
    phrase = [40, 41, 42, 43, 44, 45, 46, 47]
    return [
        [0] + phrase * 4,
        [0, 9, 10] + phrase * 2 + [11, 12] + phrase[:5],
        [0] + [17, 18, 19] * 7,
        [0, 5, 6, 7, 8] * 5 + [5, 6],
    ]


def all_prompts() -> list[list[int]]:
    return repetitive_prompts() + make_prompts(4, vocab_size=320, seed=5, min_len=3, max_len=30)


def generate(engine: LLMEngine, prompts: list[list[int]], max_new: int = MAX_NEW) -> list[list[int]]:
    return generate_greedy(engine, prompts, max_new)


@pytest.fixture(scope="module")
def plain_outputs(tiny_llama_dir: Path) -> list[list[int]]:
    return generate(make_engine(tiny_llama_dir), all_prompts())


def test_speculative_greedy_output_equals_plain_decoding_in_one_batch(
    tiny_llama_dir: Path, plain_outputs: list[list[int]]
) -> None:
    engine = make_engine(tiny_llama_dir, **SPECULATION)
    steps = 0
    prompts = all_prompts()
    for index, prompt in enumerate(prompts):
        engine.add_request(f"r{index}", prompt, greedy(MAX_NEW))
    outputs: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        steps += 1
        for output in engine.step():
            outputs.setdefault(output.request_id, []).extend(output.new_token_ids)
        for seq in engine.scheduler.running:  # rejected drafts' blocks were given back
            assert len(seq.block_table) <= -(-seq.num_tokens // engine.block_manager.block_size)
    assert [outputs[f"r{index}"] for index in range(len(prompts))] == plain_outputs
    stats = engine.stats()
    assert 0 < stats.spec_decode_num_accepted_tokens <= stats.spec_decode_num_draft_tokens
    # Accepted drafts are tokens gained without a step of their own.
    assert steps < 1 + MAX_NEW
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_speculation_counters_stay_zero_without_it(tiny_llama_dir: Path) -> None:
    engine = make_engine(tiny_llama_dir)
    generate(engine, repetitive_prompts()[:1], max_new=8)
    stats = engine.stats()
    assert stats.spec_decode_num_draft_tokens == 0 and stats.spec_decode_num_accepted_tokens == 0


def test_speculative_decoding_with_prefix_caching_matches_plain(
    tiny_llama_dir: Path, plain_outputs: list[list[int]]
) -> None:
    engine = make_engine(tiny_llama_dir, enable_prefix_caching=True, **SPECULATION)
    prompts = all_prompts()
    first = generate(engine, prompts)
    # The second round hits the blocks the first one cached (prompt and speculated output blocks).
    second = generate(engine, prompts)
    assert first == plain_outputs and second == plain_outputs
    assert engine.block_manager.prefix_cache_hits > 0
    assert engine.stats().spec_decode_num_accepted_tokens > 0


def test_speculative_decoding_under_a_tight_kv_cache_matches_plain(
    tiny_llama_dir: Path, plain_outputs: list[list[int]]
) -> None:
    # 40 blocks of 4 tokens cannot hold all 8 sequences at once: drafts must give way to decodes.
    engine = make_engine(tiny_llama_dir, kv_cache_blocks=40, max_model_len=96, **SPECULATION)
    assert generate(engine, all_prompts()) == plain_outputs
    assert engine.scheduler.num_preemptions > 0
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_speculation_stops_at_max_tokens_and_sampled_requests_decode_beside_it(
    tiny_llama_dir: Path, plain_outputs: list[list[int]]
) -> None:
    engine = make_engine(tiny_llama_dir, **SPECULATION)
    prompt = repetitive_prompts()[0]
    engine.add_request("greedy", prompt, greedy(5))
    engine.add_request("sampled", prompt, SamplingParams(max_tokens=MAX_NEW, temperature=1.0, seed=3))
    outputs = run_to_completion(engine)
    assert generated_tokens(outputs["greedy"]) == plain_outputs[0][:5]
    assert outputs["greedy"][-1].finish_reason == "length"
    assert len(generated_tokens(outputs["sampled"])) == MAX_NEW


async def test_async_engine_streams_speculated_tokens_concurrently_and_reports_counters(
    tiny_llama_dir: Path, plain_outputs: list[list[int]]
) -> None:
    engine = AsyncEngine.from_config(engine_config(tiny_llama_dir, **SPECULATION))
    await engine.start()
    try:

        async def collect(index: int, prompt: list[int]) -> list[int]:
            outputs = [output async for output in engine.generate(prompt, greedy(MAX_NEW), f"r{index}")]
            assert outputs[-1].finished and outputs[-1].completion_tokens == MAX_NEW
            return generated_tokens(outputs)

        results = await asyncio.gather(
            *(collect(index, prompt) for index, prompt in enumerate(all_prompts()))
        )
        stats = engine.stats()
    finally:
        await engine.stop()
    assert results == plain_outputs
    assert 0 < stats.spec_decode_num_accepted_tokens <= stats.spec_decode_num_draft_tokens
