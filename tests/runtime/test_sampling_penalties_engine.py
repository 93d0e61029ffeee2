"""Penalties, min_p and logit_bias through the engine on the tiny random Llama: greedy with a
repetition penalty equals `transformers`' generate(repetition_penalty=...); in a batch mixing
penalised and plain requests every request gets exactly its unbatched output; logit_bias +100 forces
a token and -100 bans it; a frequency penalty measurably cuts repeats; n-gram speculation verifies
drafts against the penalised distribution, so its output equals plain decoding's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_reference import generated_tokens, greedy, make_engine, make_prompts, run_to_completion
from transformers import AutoModelForCausalLM

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.sampling_params import InvalidParameter, SamplingParams

MAX_NEW = 24
SPECULATION = {"speculative_method": "ngram", "num_speculative_tokens": 4}


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> LLMEngine:
    return make_engine(tiny_llama_dir)


def prompts() -> list[list[int]]:
    phrase = [40, 41, 42, 43, 44, 45]
    return [
        [0] + phrase * 3,
        [0, 7, 8, 9] * 4,
        *make_prompts(4, vocab_size=320, seed=11, min_len=3, max_len=20),
    ]


def generate(engine: LLMEngine, jobs: list[tuple[list[int], SamplingParams]]) -> list[list[int]]:
    """Each job's tokens, all submitted at once so the engine batches them."""
    for index, (prompt, params) in enumerate(jobs):
        engine.add_request(f"r{index}", prompt, params)
    outputs = run_to_completion(engine)
    return [generated_tokens(outputs[f"r{index}"]) for index in range(len(jobs))]


def repeats(tokens: list[int]) -> int:
    return len(tokens) - len(set(tokens))


def test_greedy_repetition_penalty_equals_transformers(engine: LLMEngine, tiny_llama_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    for prompt in prompts()[:3]:
        input_ids = torch.tensor([prompt])
        with torch.no_grad():
            reference = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=MAX_NEW,
                do_sample=False,
                repetition_penalty=1.5,
                eos_token_id=None,
                pad_token_id=0,
            )[0, len(prompt) :].tolist()
        assert generate(engine, [(prompt, greedy(MAX_NEW, repetition_penalty=1.5))]) == [reference]


PENALISED = [
    {"frequency_penalty": 1.2},
    {"presence_penalty": 1.5, "repetition_penalty": 1.3},
    {"repetition_penalty": 1.8, "logit_bias": {"45": -100}},
    {"frequency_penalty": 0.6, "presence_penalty": -0.5, "min_p": 0.1},
]


def test_mixed_batch_gives_every_request_its_unbatched_output(engine: LLMEngine) -> None:
    all_prompts = prompts()
    jobs = [(prompt, greedy(MAX_NEW)) for prompt in all_prompts]
    jobs += [(prompt, greedy(MAX_NEW, **PENALISED[i % 4])) for i, prompt in enumerate(all_prompts)]  # type: ignore[arg-type]
    alone = [generate(engine, [job])[0] for job in jobs]
    batched = generate(engine, jobs)
    assert batched == alone
    plain, penalised = batched[: len(all_prompts)], batched[len(all_prompts) :]
    assert plain != penalised  # the penalties did change something


def test_seeded_sampling_with_penalties_is_batch_independent(engine: LLMEngine) -> None:
    jobs = [
        (prompt, SamplingParams(max_tokens=12, seed=index, ignore_eos=True, **PENALISED[index % 4]))  # type: ignore[arg-type]
        for index, prompt in enumerate(prompts())
    ]
    plain = [(prompt, SamplingParams(max_tokens=12, seed=7, ignore_eos=True)) for prompt in prompts()[:2]]
    alone = [generate(engine, [job])[0] for job in jobs + plain]
    assert generate(engine, jobs + plain) == alone


def test_logit_bias_forces_and_bans_tokens(engine: LLMEngine) -> None:
    prompt = prompts()[0]
    forced = generate(
        engine, [(prompt, SamplingParams(max_tokens=8, seed=1, ignore_eos=True, logit_bias={"77": 100}))]
    )
    assert forced == [[77] * 8]
    baseline = generate(engine, [(prompt, greedy(MAX_NEW))])[0]
    banned = {str(token): -100 for token in set(baseline)}
    steered = generate(engine, [(prompt, greedy(MAX_NEW, logit_bias=banned))])[0]
    assert not set(steered) & set(baseline)


def test_frequency_penalty_cuts_repeats_on_a_tiny_random_model(engine: LLMEngine) -> None:
    all_prompts = prompts()
    plain = generate(engine, [(prompt, greedy(48)) for prompt in all_prompts])
    penalised = generate(engine, [(prompt, greedy(48, frequency_penalty=2.0)) for prompt in all_prompts])
    plain_repeats = sum(repeats(tokens) for tokens in plain)
    penalised_repeats = sum(repeats(tokens) for tokens in penalised)
    assert plain_repeats > 0
    assert penalised_repeats < plain_repeats / 2, (plain_repeats, penalised_repeats)


REPEAT_FRIENDLY = [
    {"frequency_penalty": -2.0},
    {"frequency_penalty": -1.0, "presence_penalty": 1.0},
    {"repetition_penalty": 0.7, "frequency_penalty": -1.5, "logit_bias": {"44": 2}},
]
"""Penalties that favour repeats, so prompt-lookup drafts get accepted and each draft position's
counts (the drafts before it) decide the next token."""


def test_speculation_verifies_drafts_with_the_penalised_distribution(tiny_llama_dir: Path) -> None:
    jobs = [(prompt, greedy(MAX_NEW, **REPEAT_FRIENDLY[i % 3])) for i, prompt in enumerate(prompts())]  # type: ignore[arg-type]
    plain = generate(make_engine(tiny_llama_dir), jobs)
    speculating = make_engine(tiny_llama_dir, **SPECULATION)
    assert generate(speculating, jobs) == plain
    stats = speculating.stats()
    assert stats.spec_decode_num_accepted_tokens > 0


def test_a_logit_bias_id_outside_the_vocabulary_is_refused_at_admission(engine: LLMEngine) -> None:
    with pytest.raises(InvalidParameter, match=r"'logit_bias': 320; .*0\.\.319 .*vocabulary size is 320"):
        engine.add_request("bad", [0, 5], greedy(4, logit_bias={"320": 5}))
    assert not engine.has_unfinished_requests()
