"""Sampling and stopping through the engine: stop token ids, stop strings (never streamed),
min_tokens, EOS and ignore_eos, max_tokens, logprobs, seeds, top-k / top-p."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_reference import generated_tokens, greedy, make_engine, run_to_completion
from transformers import AutoModelForCausalLM

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.output_processor import OutputProcessor
from berth_runtime.engine.outputs import RequestOutput
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import SamplingParams

PROMPT_TEXT = "The operator scales pods onto nodes"


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> LLMEngine:
    return make_engine(tiny_llama_dir)


def generate(
    engine: LLMEngine, params: SamplingParams, prompt: list[int] | None = None
) -> list[RequestOutput]:
    assert engine.tokenizer is not None
    engine.add_request("req", prompt or engine.tokenizer.encode(PROMPT_TEXT), params)
    return run_to_completion(engine)["req"]


def text_of(outputs: list[RequestOutput]) -> str:
    return "".join(output.new_text for output in outputs)


def test_sampling_stop_token_id_ends_generation_without_its_text(engine: LLMEngine) -> None:
    baseline_outputs = generate(engine, greedy(16))
    baseline = generated_tokens(baseline_outputs)
    stop_token = baseline[5]
    cut = baseline.index(stop_token)
    outputs = generate(engine, greedy(16, stop_token_ids=(stop_token,)))
    assert generated_tokens(outputs) == baseline[: cut + 1]
    assert outputs[-1].finish_reason == "stop"
    # The streamed text is that of every token before the stop token, not the stop token's.
    assert engine.tokenizer is not None
    prompt = engine.tokenizer.encode(PROMPT_TEXT)
    prompt_text = engine.tokenizer.decode(prompt)
    assert text_of(outputs) == engine.tokenizer.decode(prompt + baseline[:cut])[len(prompt_text) :]
    assert text_of(baseline_outputs) == engine.tokenizer.decode(prompt + baseline)[len(prompt_text) :]


def test_sampling_stop_string_is_trimmed_and_never_streamed(engine: LLMEngine) -> None:
    full_text = text_of(generate(engine, greedy(24)))
    start = len(full_text) // 2
    stop = full_text[start : start + 3]
    assert len(stop) == 3 and "\ufffd" not in stop
    outputs = generate(engine, greedy(24, stop=(stop,)))
    assert outputs[-1].finish_reason == "stop"
    assert text_of(outputs) == full_text[: full_text.find(stop)]
    assert all(stop not in output.new_text for output in outputs)


def test_sampling_min_tokens_masks_stop_tokens_until_reached(engine: LLMEngine) -> None:
    baseline = generated_tokens(generate(engine, greedy(8)))
    outputs = generate(engine, greedy(8, stop_token_ids=(baseline[0],), min_tokens=3))
    tokens = generated_tokens(outputs)
    assert baseline[0] not in tokens[:3]
    assert len(tokens) >= 3
    # Without min_tokens the same request stops at once.
    assert generated_tokens(generate(engine, greedy(8, stop_token_ids=(baseline[0],)))) == baseline[:1]


def test_sampling_logprobs_are_the_reference_log_softmax(engine: LLMEngine, tiny_llama_dir: Path) -> None:
    assert engine.tokenizer is not None
    prompt = engine.tokenizer.encode(PROMPT_TEXT)
    outputs = generate(engine, greedy(3, logprobs=4))
    tokens = generated_tokens(outputs)
    entries = [entry for output in outputs for entry in output.logprobs or []]
    assert [entry.token_id for entry in entries] == tokens
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reference(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]
    expected = torch.log_softmax(logits, dim=-1)
    for step, entry in enumerate(entries):
        assert len(entry.top) == 4
        assert entry.logprob == pytest.approx(float(expected[step, entry.token_id]), abs=1e-4)
        best = expected[step].topk(4)
        assert list(entry.top) == best.indices.tolist()
        assert entry.top[entry.token_id] == pytest.approx(entry.logprob)
    assert generate(engine, greedy(2))[-1].logprobs is None


def test_sampling_seed_reproduces_and_differs_by_seed(engine: LLMEngine) -> None:
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=42, ignore_eos=True)
    first = generated_tokens(generate(engine, params))
    # The same seed inside a batch with other (unseeded) requests gives the same tokens.
    assert engine.tokenizer is not None
    engine.add_request("other", [0, 9, 9, 9], SamplingParams(max_tokens=12, temperature=1.0, ignore_eos=True))
    engine.add_request("again", engine.tokenizer.encode(PROMPT_TEXT), params)
    assert generated_tokens(run_to_completion(engine)["again"]) == first
    different = generated_tokens(
        generate(engine, SamplingParams(max_tokens=12, temperature=1.0, seed=7, ignore_eos=True))
    )
    assert different != first


def test_sampling_top_k_one_and_tiny_top_p_are_greedy(engine: LLMEngine) -> None:
    baseline = generated_tokens(generate(engine, greedy(10)))
    top_k = SamplingParams(max_tokens=10, temperature=1.5, top_k=1, seed=3, ignore_eos=True)
    top_p = SamplingParams(max_tokens=10, temperature=1.5, top_p=1e-6, seed=3, ignore_eos=True)
    assert generated_tokens(generate(engine, top_k)) == baseline
    assert generated_tokens(generate(engine, top_p)) == baseline


def test_sampling_top_k_limits_choices_to_the_k_most_likely(engine: LLMEngine, tiny_llama_dir: Path) -> None:
    assert engine.tokenizer is not None
    prompt = engine.tokenizer.encode(PROMPT_TEXT)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        allowed = set(reference(torch.tensor([prompt])).logits[0, -1].topk(3).indices.tolist())
    seen = set()
    for seed in range(30):
        params = SamplingParams(max_tokens=1, temperature=5.0, top_k=3, seed=seed, ignore_eos=True)
        seen.add(generated_tokens(generate(engine, params))[0])
    assert seen <= allowed
    assert len(seen) > 1


def _sequence(params: SamplingParams, outputs: int) -> Sequence:
    sequence = Sequence("s", [0, 5, 6], params, arrival=0)
    sequence.token_ids += [7] * outputs
    return sequence


@pytest.mark.parametrize(
    ("params", "previous_outputs", "token", "reason"),
    [
        (SamplingParams(max_tokens=5), 0, 2, "stop"),  # EOS
        (SamplingParams(max_tokens=5, ignore_eos=True), 0, 2, None),
        (SamplingParams(max_tokens=5, min_tokens=2), 0, 2, None),  # EOS before min_tokens cannot end
        (SamplingParams(max_tokens=5, min_tokens=2), 2, 2, "stop"),
        (SamplingParams(max_tokens=5, stop_token_ids=(9,)), 0, 9, "stop"),
        (SamplingParams(max_tokens=5, ignore_eos=True, stop_token_ids=(9,)), 1, 9, "stop"),
        (SamplingParams(max_tokens=5), 3, 8, None),
        (SamplingParams(max_tokens=5), 4, 8, "length"),
        (SamplingParams(max_tokens=50), 6, 8, "length"),  # the context limit (10 tokens)
    ],
)
def test_sampling_finish_reasons(
    params: SamplingParams, previous_outputs: int, token: int, reason: str | None
) -> None:
    processor = OutputProcessor(eos_token_ids=(2,), max_model_len=10)
    assert processor.append_token(_sequence(params, previous_outputs), token, None) == reason
