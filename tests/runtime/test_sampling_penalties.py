"""The sampler's presence, frequency and repetition penalties, min_p and logit_bias against a
reference in plain torch and `transformers`' own processors, on random logits: bit for bit on the
processed logits, the same support and distribution after temperature / top-k / top-p / min-p, the
same tokens from the same seeded noise; rows that ask for nothing stay untouched in a mixed batch;
draft positions are judged on their own history; counts follow the output step by step."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from berth_runtime.engine.sampler import Sampler
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import SamplingParams

VOCAB = 97
EOS = 1


def make_seq(params: SamplingParams, prompt: list[int], output: list[int], name: str = "r") -> Sequence:
    seq = Sequence(request_id=name, prompt_token_ids=prompt, params=params, arrival=0)
    seq.token_ids += output
    if params.seed is not None:
        seq.generator = torch.Generator().manual_seed(params.seed)
    return seq


def sampler() -> Sampler:
    return Sampler((EOS,), torch.Generator().manual_seed(0))


def reference_processed(logits: torch.Tensor, seq: Sequence, drafts: list[int] = ()) -> torch.Tensor:  # type: ignore[assignment]
    """One row's processed logits: logit_bias, then HF's repetition penalty over prompt + output,
    then OpenAI's frequency and presence penalties over the output."""
    params = seq.params
    row = logits.clone()
    for token_id, bias in params.logit_bias:
        row[token_id] += bias
    history = seq.token_ids + list(drafts)
    if params.repetition_penalty != 1:
        processor = RepetitionPenaltyLogitsProcessor(penalty=params.repetition_penalty)
        row = processor(torch.tensor([history]), row[None].clone())[0]
    output = torch.tensor(history[seq.num_prompt_tokens :], dtype=torch.int64)
    counts = torch.bincount(output, minlength=VOCAB).to(torch.int32)
    if params.frequency_penalty or params.presence_penalty:
        row = row - params.frequency_penalty * counts.float() - params.presence_penalty * (counts > 0).float()
    return row


def random_case(rng: random.Random, **params: object) -> Sequence:
    prompt = [rng.randrange(VOCAB) for _ in range(rng.randrange(1, 30))]
    output = [rng.randrange(VOCAB // 4) for _ in range(rng.randrange(0, 40))]  # repeats on purpose
    return make_seq(SamplingParams(max_tokens=64, **params), prompt, output)  # type: ignore[arg-type]


PENALTY_CASES = [
    {"presence_penalty": 1.5},
    {"presence_penalty": -2.0},
    {"frequency_penalty": 0.7},
    {"frequency_penalty": -1.25},
    {"repetition_penalty": 1.3},
    {"repetition_penalty": 0.6},
    {"repetition_penalty": 1.2, "frequency_penalty": 0.5, "presence_penalty": 0.4},
    {"logit_bias": {"3": 7.5, "50": -100}},
    {"logit_bias": {"10": 100}, "repetition_penalty": 2.0, "frequency_penalty": 2.0},
]


@pytest.mark.parametrize("params", PENALTY_CASES)
def test_processed_logits_equal_the_reference_bit_for_bit(params: dict[str, object]) -> None:
    rng = random.Random(str(params))
    seqs = [random_case(rng, temperature=0.0, **params) for _ in range(8)]
    logits = torch.randn(len(seqs), VOCAB, generator=torch.Generator().manual_seed(1)) * 3
    processed = sampler().process(logits.clone(), seqs, [0] * len(seqs))
    for row, seq in enumerate(seqs):
        assert torch.equal(processed[row], reference_processed(logits[row], seq))
    tokens, _ = sampler()(logits.clone(), seqs)
    assert tokens == [int(reference_processed(logits[row], seq).argmax()) for row, seq in enumerate(seqs)]


def test_a_mixed_batch_leaves_plain_rows_untouched() -> None:
    rng = random.Random(3)
    plain = [random_case(rng, temperature=0.0) for _ in range(3)]
    penalised = [
        random_case(rng, temperature=0.0, **params)  # type: ignore[arg-type]
        for params in PENALTY_CASES[:5]
    ]
    seqs = [seq for pair in zip(plain + penalised, penalised + plain, strict=False) for seq in pair]
    logits = torch.randn(len(seqs), VOCAB)
    processed = sampler().process(logits.clone(), seqs, [0] * len(seqs))
    for row, seq in enumerate(seqs):
        expected = logits[row] if seq in plain else reference_processed(logits[row], seq)
        assert torch.equal(processed[row], expected)
    plain_logits = logits[:3].clone()
    unchanged = plain_logits.clone()
    assert sampler().process(plain_logits, plain, [0] * 3) is plain_logits  # nothing asked: no work
    assert torch.equal(plain_logits, unchanged)


def hf_warped(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """`transformers`' warpers in its own order: temperature, top-k, top-p, min-p."""
    scores = TemperatureLogitsWarper(params.temperature)(None, logits[None].clone())  # type: ignore[arg-type]
    if params.top_k:
        scores = TopKLogitsWarper(params.top_k)(None, scores)  # type: ignore[arg-type]
    if params.top_p < 1:
        scores = TopPLogitsWarper(params.top_p)(None, scores)  # type: ignore[arg-type]
    if params.min_p:
        scores = MinPLogitsWarper(params.min_p)(None, scores)  # type: ignore[arg-type]
    return scores[0]


@pytest.mark.parametrize(
    "params",
    [
        {"min_p": 0.05},
        {"min_p": 0.3, "temperature": 0.7},
        {"min_p": 1.0},
        {"min_p": 0.1, "top_k": 20, "temperature": 1.3},
        {"min_p": 0.02, "top_p": 0.8, "repetition_penalty": 1.4},
        {"min_p": 0.2, "top_k": 40, "top_p": 0.9, "frequency_penalty": 1.0, "logit_bias": {"7": 3}},
    ],
)
def test_sampled_distribution_matches_transformers_warpers(params: dict[str, object]) -> None:
    rng = random.Random(str(params))
    seqs = [random_case(rng, seed=100 + index, **params) for index in range(16)]
    logits = torch.randn(len(seqs), VOCAB, generator=torch.Generator().manual_seed(2)) * 2
    the_sampler = sampler()
    processed = the_sampler.process(logits.clone(), seqs, [0] * len(seqs))
    probs = the_sampler.probabilities(processed, seqs)
    expected_tokens = []
    for row, seq in enumerate(seqs):
        warped = hf_warped(reference_processed(logits[row], seq), seq.params)
        assert torch.equal(probs[row] > 0, torch.isfinite(warped))
        torch.testing.assert_close(probs[row] / probs[row].sum(), torch.softmax(warped, dim=-1))
        noise = torch.empty(VOCAB).exponential_(generator=torch.Generator().manual_seed(seq.params.seed))
        expected_tokens.append(int((torch.softmax(warped, dim=-1) / noise).argmax()))
    tokens, _ = sampler()(logits.clone(), seqs)
    assert tokens == expected_tokens


def test_min_p_keeps_exactly_the_tokens_above_its_share_of_the_top_probability() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.11, 0.09, 0.05, 0.05]]))  # threshold 0.1
    seq = make_seq(SamplingParams(min_p=0.2), [0], [])
    probs = sampler().probabilities(logits, [seq])
    assert (probs[0] > 0).tolist() == [True, True, True, False, False, False]


def test_draft_positions_count_the_drafts_before_them() -> None:
    rng = random.Random(5)
    seq = random_case(
        rng, temperature=0.0, repetition_penalty=1.5, frequency_penalty=1.0, presence_penalty=0.5
    )
    seq.draft_token_ids = [2, 2, 60, 2]
    logits = torch.randn(5, VOCAB)
    processed = sampler().process(logits.clone(), [seq] * 5, list(range(5)))
    for position in range(5):
        expected = reference_processed(logits[position], seq, seq.draft_token_ids[:position])
        assert torch.equal(processed[position], expected)


def test_counts_follow_the_output_as_it_grows() -> None:
    rng = random.Random(9)
    seq = random_case(rng, temperature=0.0, frequency_penalty=0.9, repetition_penalty=1.1)
    the_sampler = sampler()
    for step in range(6):
        logits = torch.randn(1, VOCAB)
        processed = the_sampler.process(logits.clone(), [seq], [0])
        assert torch.equal(processed[0], reference_processed(logits[0], seq)), step
        seq.token_ids += [rng.randrange(8) for _ in range(step % 3 + 1)]  # 1..3 tokens a step


def test_logit_bias_forces_and_bans_even_when_sampling() -> None:
    logits = torch.randn(64, VOCAB) * 4
    forced = [make_seq(SamplingParams(seed=i, logit_bias={"42": 100}), [0], [], f"f{i}") for i in range(32)]
    banned_ids = {str(token): -100 for token in range(VOCAB) if token % 2 == 0}
    banned = [make_seq(SamplingParams(seed=i, logit_bias=banned_ids), [0], [], f"b{i}") for i in range(32)]
    tokens, _ = sampler()(logits, forced + banned)
    assert tokens[:32] == [42] * 32
    assert all(token % 2 == 1 for token in tokens[32:])


def test_logprobs_stay_those_of_the_raw_logits() -> None:
    logits = torch.randn(1, VOCAB)
    seq = make_seq(SamplingParams(temperature=0.0, logprobs=2, logit_bias={"5": 100}), [0], [])
    tokens, logprobs = sampler()(logits.clone(), [seq])
    assert tokens == [5]
    entry = logprobs[0]
    assert entry is not None and entry.logprob == pytest.approx(float(torch.log_softmax(logits[0], -1)[5]))


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("presence_penalty", 2.5, "[-2, 2]"),
        ("frequency_penalty", -3, "[-2, 2]"),
        ("frequency_penalty", float("nan"), "[-2, 2]"),
        ("repetition_penalty", 0, "> 0"),
        ("repetition_penalty", -1.0, "> 0"),
        ("min_p", 1.5, "[0, 1]"),
        ("min_p", -0.1, "[0, 1]"),
        ("logit_bias", {"x": 1}, "token ids"),
        ("logit_bias", {"-4": 1}, "token ids"),
        ("logit_bias", [1, 2], "token ids"),
        ("logit_bias", {"9" * 40: 1}, "token ids"),
    ],
)
def test_bad_values_name_the_field_value_and_range(field: str, value: object, accepted: str) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        SamplingParams(**{field: value})  # type: ignore[arg-type]
    assert accepted in str(raised.value)


def test_logit_bias_value_out_of_range_names_its_id() -> None:
    with pytest.raises(ValueError, match=r"'logit_bias\.7': 150\.0; accepted: a number in \[-100, 100\]"):
        SamplingParams(logit_bias={"7": 150})


def test_logit_bias_id_outside_the_vocabulary_names_id_and_vocab_size() -> None:
    params = SamplingParams(logit_bias={"5": 1, "320": 2})
    params.check_logit_bias_ids(321)
    with pytest.raises(ValueError, match=r"'logit_bias': 320; accepted: token ids in 0\.\.319 .*size is 320"):
        params.check_logit_bias_ids(320)
