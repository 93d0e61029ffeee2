"""Gemma 2 (attention and final logit soft-capping) and Gemma 3 text (per-head q/k norms, local rope
base, linear-scaled global rope), both with GeGLU, scaled embeddings, (1 + weight) norms and a
sliding window of 8 on alternate layers (shorter than the prompts, so the window masks): logits equal
transformers' at fp32 through the engine path, and greedy tokens equal under continuous batching
with prefix hits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_family_checks import (
    ATOL,
    PROMPT,
    assert_greedy_matches_under_batching,
    assert_kernel_path_matches_the_reference_path,
    max_logit_difference,
    prefill_logits,
    reference_logits,
    write_family_model,
)

from berth_runtime.models.model_config import load_model_config

GEMMA_SETTINGS = {"sliding_window": 8, "query_pre_attn_scalar": 16}


@pytest.fixture(scope="module")
def tiny_gemma2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    return write_family_model(
        tmp_path_factory.mktemp("tiny-gemma2"),
        Gemma2Config,
        Gemma2ForCausalLM,
        attn_logit_softcapping=2.0,  # small caps, so capping changes the tiny model's scores and logits
        final_logit_softcapping=5.0,
        **GEMMA_SETTINGS,
    )


@pytest.fixture(scope="module")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return write_family_model(
        tmp_path_factory.mktemp("tiny-gemma3"),
        Gemma3TextConfig,
        Gemma3ForCausalLM,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        **GEMMA_SETTINGS,
    )


def test_gemma_configs_read_windows_caps_and_ropes(tiny_gemma2_dir: Path, tiny_gemma3_dir: Path) -> None:
    gemma2, gemma3 = load_model_config(tiny_gemma2_dir), load_model_config(tiny_gemma3_dir)
    assert gemma2.layer_sliding_windows == (8, None) and gemma2.sliding_window is None
    assert (gemma2.attention_logit_softcap, gemma2.final_logit_softcap) == (2.0, 5.0)
    assert gemma2.hidden_act == "gelu_pytorch_tanh" and gemma2.tie_word_embeddings and not gemma2.qk_norm
    assert gemma3.qk_norm and gemma3.local_rope is not None and gemma3.local_rope.theta == 10000.0
    assert (gemma3.rope.rope_type, gemma3.rope.factor, gemma3.rope.theta) == ("linear", 4.0, 1000000.0)
    assert gemma3.max_context_len == 512  # the window is masked per layer, it caps no context


@pytest.mark.parametrize("fixture_name", ["tiny_gemma2_dir", "tiny_gemma3_dir"])
def test_gemma_logits_match_transformers(fixture_name: str, request: pytest.FixtureRequest) -> None:
    assert max_logit_difference(request.getfixturevalue(fixture_name)) <= ATOL


@pytest.mark.parametrize("fixture_name", ["tiny_gemma2_dir", "tiny_gemma3_dir"])
def test_gemma_greedy_matches_under_batching_with_prefix_hits(
    fixture_name: str, request: pytest.FixtureRequest
) -> None:
    assert_greedy_matches_under_batching(request.getfixturevalue(fixture_name))


@pytest.mark.parametrize("fixture_name", ["tiny_gemma2_dir", "tiny_gemma3_dir"])
def test_gemma_on_the_kernel_path_gives_the_reference_tokens(
    fixture_name: str, request: pytest.FixtureRequest
) -> None:
    """Sliding windows (shorter than the prompts) and Gemma 2's soft-capped scores are arguments of the
    attention kernels: same tokens as the reference, and the model captures decode graphs."""
    assert_kernel_path_matches_the_reference_path(request.getfixturevalue(fixture_name), decode_graphs=True)


def test_gemma2_bfloat16_follows_transformers_rounding(tiny_gemma2_dir: Path) -> None:
    """(1 + weight) norms in fp32 with one rounding, as transformers: in bf16 the gap to transformers'
    bf16 logits is well below the gap between its bf16 and fp32 logits."""
    ours = prefill_logits(tiny_gemma2_dir, dtype="bfloat16")
    in_bf16 = reference_logits(tiny_gemma2_dir, PROMPT, torch.bfloat16)[-1]
    in_fp32 = reference_logits(tiny_gemma2_dir, PROMPT)[-1]
    assert (ours - in_bf16).abs().max() < 0.5 * (in_bf16 - in_fp32).abs().max()
