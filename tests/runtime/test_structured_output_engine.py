"""Grammar-constrained decoding through the engine on the tiny random Llama, sampled at temperature 1
over many seeds: every json_object output that stops is a JSON object, every json_schema output that
stops validates against its schema (and nearly all stop: the schema is finite); guided choice and
regex outputs match; rows without a grammar keep their logits bit for bit and their unbatched
tokens; masks computed ahead on the helper thread equal masks computed in the step; n-gram
speculation verifies drafts against the grammar (same tokens as plain decoding);
EOS-changing settings that would fight the grammar are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import llguidance
import pytest
import torch
from engine_reference import generated_tokens, make_engine, make_prompts, run_to_completion

import berth_runtime.engine.sampler as sampler_module
from berth_runtime.engine.grammar import Grammar, compile_grammar, grammar_vocabulary
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.sampler import Sampler
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import InvalidParameter, SamplingParams

SEEDS = range(40)
COMPACT = {"whitespace_flexible": False}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["x", "y", "z"]}, "maxItems": 3},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "ok"],
    "additionalProperties": False,
}
SPECULATION = {"speculative_method": "ngram", "num_speculative_tokens": 4}


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: Path) -> LLMEngine:
    return make_engine(tiny_llama_dir)


def grammar(engine: LLMEngine, text: str) -> Grammar:
    assert engine.tokenizer is not None
    vocabulary = grammar_vocabulary(engine.tokenizer, engine.vocab_size, engine.sampler.eos_token_ids)
    return compile_grammar(text, vocabulary, "test")


def json_grammar(engine: LLMEngine, schema: dict[str, object]) -> Grammar:
    return grammar(engine, llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=COMPACT))  # type: ignore[arg-type]


def run(engine: LLMEngine, jobs: list[tuple[list[int], SamplingParams]]) -> list[tuple[str, str, list[int]]]:
    """(text, finish reason, tokens) of each job, all submitted at once so the engine batches them."""
    for index, (prompt, params) in enumerate(jobs):
        engine.add_request(f"r{index}", prompt, params)
    outputs = run_to_completion(engine)
    results = []
    for index in range(len(jobs)):
        outs = outputs[f"r{index}"]
        results.append(
            ("".join(o.new_text for o in outs), str(outs[-1].finish_reason), generated_tokens(outs))
        )
    return results


def sampled(seed: int, max_tokens: int, constraint: Grammar | None) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed, grammar=constraint)


def test_json_object_outputs_that_stop_are_json_objects(engine: LLMEngine) -> None:
    constraint = json_grammar(engine, {"type": "object"})
    results = run(engine, [([0, 5, 6, 7], sampled(seed, 48, constraint)) for seed in SEEDS])
    stopped = [text for text, reason, _ in results if reason == "stop"]
    for text in stopped:
        assert isinstance(json.loads(text), dict), text
    for text, reason, _ in results:
        assert reason in ("stop", "length") and text.startswith("{"), (reason, text)
    assert len(stopped) >= 5, results  # random weights wander in strings; enough stop to mean something


def test_json_schema_outputs_validate_and_stop(engine: LLMEngine) -> None:
    constraint = json_grammar(engine, SCHEMA)
    prompts = make_prompts(len(SEEDS), vocab_size=320, seed=3, min_len=2, max_len=12)
    results = run(
        engine, [(prompt, sampled(seed, 64, constraint)) for seed, prompt in zip(SEEDS, prompts, strict=True)]
    )
    stopped = [text for text, reason, _ in results if reason == "stop"]
    for text in stopped:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(stopped) >= 0.9 * len(SEEDS), results


def test_choice_and_regex(engine: LLMEngine) -> None:
    choices = ["yes", "no", "maybe so"]
    choice = grammar(engine, llguidance.LLMatcher.grammar_from_regex("|".join(map(re.escape, choices))))
    regex = grammar(engine, llguidance.LLMatcher.grammar_from_regex(r"[a-f]{2}-[0-9]{3}"))
    results = run(engine, [([0, 9], sampled(seed, 16, choice)) for seed in range(10)])
    results += run(engine, [([0, 9], sampled(seed, 16, regex)) for seed in range(10)])
    assert {text for text, _, _ in results[:10]} <= set(choices)
    assert all(re.fullmatch(r"[a-f]{2}-[0-9]{3}", text) for text, _, _ in results[10:]), results
    assert all(reason == "stop" for _, reason, _ in results)


def test_free_requests_get_their_unbatched_output_beside_constrained_ones(engine: LLMEngine) -> None:
    constraint = json_grammar(engine, SCHEMA)
    prompts = make_prompts(6, vocab_size=320, seed=5, min_len=3, max_len=15)
    free = [(prompt, sampled(seed, 20, None)) for seed, prompt in enumerate(prompts[:3])]
    free.append((prompts[3], SamplingParams(max_tokens=20, temperature=0.0)))
    constrained = [(prompt, sampled(seed, 40, constraint)) for seed, prompt in enumerate(prompts[3:])]
    alone = [run(engine, [job])[0] for job in free]
    batched = run(engine, constrained + free + constrained)
    assert batched[len(constrained) : len(constrained) + len(free)] == alone


def test_rows_without_a_grammar_keep_their_logits_bit_for_bit(engine: LLMEngine) -> None:
    constraint = json_grammar(engine, {"type": "object"})
    seqs = [
        Sequence(request_id=str(index), prompt_token_ids=[0, 5], params=params, arrival=index)
        for index, params in enumerate([sampled(1, 8, None), sampled(2, 8, constraint), sampled(3, 8, None)])
    ]
    logits = torch.randn(3, engine.vocab_size, generator=torch.Generator().manual_seed(0))
    processed = Sampler(engine.sampler.eos_token_ids, torch.Generator()).process(
        logits.clone(), seqs, [0, 0, 0]
    )
    assert torch.equal(processed[0], logits[0]) and torch.equal(processed[2], logits[2])
    allowed = processed[1].isfinite().nonzero().flatten().tolist()
    assert engine.tokenizer is not None
    assert {engine.tokenizer.decode([token]) for token in allowed} == {"{"}  # compact JSON opens with "{"


def test_speculation_checks_drafts_against_the_grammar(tiny_llama_dir: Path, engine: LLMEngine) -> None:
    """Greedy constrained requests speculate; each draft position gets the grammar's mask after the
    drafts before it, so the tokens equal plain constrained decoding's."""
    repetitive = grammar(engine, llguidance.LLMatcher.grammar_from_regex(r"(ab|cd|the )+\."))
    schema = json_grammar(engine, SCHEMA)
    prompt_text = "ab ab the ab cd ab the the abcd"
    assert engine.tokenizer is not None
    prompt = [0, *engine.tokenizer.encode(prompt_text, add_special_tokens=False)] * 2
    jobs = [
        (prompt, SamplingParams(max_tokens=40, temperature=0.0, grammar=repetitive)),
        (prompt[:9], SamplingParams(max_tokens=40, temperature=0.0, grammar=schema)),
        (prompt, SamplingParams(max_tokens=24, temperature=0.0)),
    ]
    plain = run(engine, jobs)
    speculating = make_engine(tiny_llama_dir, **SPECULATION)
    assert run(speculating, jobs) == plain
    assert speculating.stats().spec_decode_num_accepted_tokens > 0
    assert re.fullmatch(r"(ab|cd|the )+\.", plain[0][0]) or plain[0][1] == "length", plain[0]


def test_masks_computed_ahead_equal_masks_computed_in_the_step(
    engine: LLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next step's mask, computed on the helper thread after sampling, is the one the step itself
    would compute: the same tokens with the look-ahead switched off."""
    constraint = json_grammar(engine, SCHEMA)
    prompts = make_prompts(6, vocab_size=320, seed=9, min_len=2, max_len=10)
    jobs = [(prompt, sampled(seed, 64, constraint)) for seed, prompt in enumerate(prompts)]
    ahead = run(engine, jobs)
    monkeypatch.setattr(sampler_module, "prefetch_grammar_masks", lambda *args: None)
    assert run(engine, jobs) == ahead


@pytest.mark.parametrize("setting", [{"ignore_eos": True}, {"min_tokens": 2}])
def test_settings_that_fight_the_grammar_are_refused(engine: LLMEngine, setting: dict[str, object]) -> None:
    name = next(iter(setting))
    with pytest.raises(InvalidParameter, match=rf"'{name}'.*structured output \(test\)"):
        SamplingParams(max_tokens=8, grammar=json_grammar(engine, {"type": "object"}), **setting)  # type: ignore[arg-type]
