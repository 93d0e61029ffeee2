"""The model matches `transformers` (the reference implementation) on real checkpoints: prefill
logits and the logits of every decode step, fp32, atol 1e-4, for Llama (GQA, llama3 rope, untied)
and Qwen2 (q/k/v bias, tied, sharded), whole and chunked prefill, alone and batched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_family_checks import run_rows
from transformers import AutoModelForCausalLM

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import SamplingParams

ATOL = 1e-4


def reference_logits(model_dir: Path, token_ids: list[int]) -> torch.Tensor:
    """[len(token_ids), vocab] logits of the transformers model."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([token_ids])).logits[0].float()


def make_engine(model_dir: Path, **overrides: object) -> LLMEngine:
    config = RuntimeConfig(
        **{"model": str(model_dir), "dtype": "float32", "device": "cpu", "block_size": 4, **overrides}  # type: ignore[arg-type]
    )
    return build_engine(config).engine


def new_sequence(token_ids: list[int], name: str) -> Sequence:
    return Sequence(name, list(token_ids), SamplingParams(), arrival=0)


PROMPT = [0, 17, 94, 203, 5, 66, 311, 42, 8, 150, 77, 230, 19]


@pytest.mark.parametrize("fixture_name", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_model_prefill_and_every_decode_step_match_transformers(
    fixture_name: str, request: pytest.FixtureRequest
) -> None:
    model_dir: Path = request.getfixturevalue(fixture_name)
    engine = make_engine(model_dir)
    seq = new_sequence(PROMPT, "a")
    step_logits = [run_rows(engine, [(seq, len(PROMPT))])["a"]]
    for _ in range(10):
        seq.token_ids.append(int(step_logits[-1].argmax()))
        step_logits.append(run_rows(engine, [(seq, 1)])["a"])
    # Row i of the reference is the prediction after token i: the prefill's is row len(PROMPT) - 1.
    expected = reference_logits(model_dir, seq.token_ids)[len(PROMPT) - 1 :]
    torch.testing.assert_close(torch.stack(step_logits), expected, atol=ATOL, rtol=0)


def test_model_chunked_prefill_and_mixed_batch_match_transformers(tiny_qwen2_dir: Path) -> None:
    engine = make_engine(tiny_qwen2_dir)
    long_prompt = PROMPT * 3
    chunked = new_sequence(long_prompt, "chunked")
    decoding = new_sequence(PROMPT[:5], "decoding")
    run_rows(engine, [(decoding, 5)])
    decoding.token_ids.append(7)
    # Chunks of 10, 10, rest, each batched with a decode of another sequence.
    run_rows(engine, [(chunked, 10), (decoding, 1)])
    decoding.token_ids.append(9)
    run_rows(engine, [(chunked, 10), (decoding, 1)])
    decoding.token_ids.append(11)
    last = run_rows(engine, [(decoding, 1), (chunked, len(long_prompt) - 20)])
    torch.testing.assert_close(
        last["chunked"], reference_logits(tiny_qwen2_dir, long_prompt)[-1], atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        last["decoding"], reference_logits(tiny_qwen2_dir, decoding.token_ids)[-1], atol=ATOL, rtol=0
    )


def test_model_bfloat16_matches_transformers_in_bfloat16(tiny_llama_dir: Path) -> None:
    """bf16 follows Hugging Face's rounding steps (norm in fp32, rope tables cast to bf16): the gap to
    transformers in bf16 is far below the gap between bf16 and fp32."""
    engine = make_engine(tiny_llama_dir, dtype="bfloat16")
    prompt = PROMPT * 2
    ours = run_rows(engine, [(new_sequence(prompt, "a"), len(prompt))])["a"]
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([prompt])).logits[0, -1].float()
    fp32_gap = (reference_logits(tiny_llama_dir, prompt)[-1] - expected).abs().max()
    assert fp32_gap > 0.02
    torch.testing.assert_close(ours, expected, atol=0.01, rtol=0)
