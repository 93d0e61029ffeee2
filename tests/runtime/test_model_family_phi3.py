"""Phi-3 (q/k/v and gate/up stored fused in the checkpoint, partial rotary, LongRoPE as Phi-3.5 and
Phi-4-mini use it): logits equal transformers' at fp32 through the engine path, and greedy tokens
equal under continuous batching with prefix hits."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_family_checks import (
    ATOL,
    assert_greedy_matches_under_batching,
    assert_kernel_path_matches_the_reference_path,
    max_logit_difference,
    write_family_model,
)
from safetensors import safe_open

from berth_runtime.models.model_config import load_model_config


@pytest.fixture(scope="module")
def tiny_phi3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Phi3Config, Phi3ForCausalLM

    return write_family_model(
        tmp_path_factory.mktemp("tiny-phi3"),
        Phi3Config,
        Phi3ForCausalLM,
        pad_token_id=0,  # Phi3Config's default (32000) lies outside the tiny vocabulary
        original_max_position_embeddings=128,
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5,
            "short_factor": [1.0, 1.5, 2.5, 4.0],  # one per rotated frequency (8 of 16 dimensions)
            "long_factor": [2.0, 3.0, 5.0, 8.0],
        },
    )


def test_phi3_checkpoint_is_fused_rotates_half_of_each_head_with_longrope(tiny_phi3_dir: Path) -> None:
    with safe_open(str(tiny_phi3_dir / "model.safetensors"), framework="pt") as checkpoint:
        names = set(checkpoint.keys())
    assert {"model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.mlp.gate_up_proj.weight"} <= names
    config = load_model_config(tiny_phi3_dir)
    assert config.rotary_dim == 8 and config.head_dim == 16
    assert config.rope.short_factor == (1.0, 1.5, 2.5, 4.0) and config.rope.factor == 4.0
    assert config.max_context_len == 128  # LongRoPE is served within its original length


def test_phi3_logits_match_transformers(tiny_phi3_dir: Path) -> None:
    assert max_logit_difference(tiny_phi3_dir) <= ATOL


def test_phi3_greedy_matches_under_batching_with_prefix_hits(tiny_phi3_dir: Path) -> None:
    assert_greedy_matches_under_batching(tiny_phi3_dir)


def test_phi3_on_the_kernel_path_gives_the_reference_tokens(tiny_phi3_dir: Path) -> None:
    """Partial rotary runs the reference rope (the fused kernel rotates whole heads): no decode graphs."""
    assert_kernel_path_matches_the_reference_path(tiny_phi3_dir, decode_graphs=False)
