"""Mixture-of-experts families on the grouped reference expert path: Mixtral (top-2 of 4, renormalized),
Qwen2-MoE (shared expert behind a sigmoid gate, top-k not renormalized, a dense layer from
mlp_only_layers) and Qwen3-MoE (top-2 of 8, renormalized, per-head q/k norms): logits equal
transformers' at fp32 through the engine path, and greedy tokens equal under continuous batching with
prefix hits."""

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

from berth_runtime.models.model_config import load_model_config

pytest_plugins = ["moe_checkpoints"]


@pytest.fixture(scope="module")
def tiny_qwen3_moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    return write_family_model(
        tmp_path_factory.mktemp("tiny-qwen3-moe"),
        Qwen3MoeConfig,
        Qwen3MoeForCausalLM,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        norm_topk_prob=True,
    )


def test_moe_configs_read_the_experts(
    tiny_mixtral_dir: Path, tiny_qwen2_moe_dir: Path, tiny_qwen3_moe_dir: Path
) -> None:
    mixtral, qwen2, qwen3 = (
        load_model_config(d) for d in (tiny_mixtral_dir, tiny_qwen2_moe_dir, tiny_qwen3_moe_dir)
    )
    assert mixtral.moe is not None and qwen2.moe is not None and qwen3.moe is not None
    assert (mixtral.moe.num_experts, mixtral.moe.experts_per_token, mixtral.moe.normalize_top_k) == (
        4,
        2,
        True,
    )
    assert qwen2.moe.sparse_layers == (True, False) and qwen2.moe.shared_expert_intermediate_size == 64
    assert not qwen2.moe.normalize_top_k and qwen2.qkv_bias
    assert qwen3.moe.num_experts == 8 and qwen3.moe.normalize_top_k and qwen3.qk_norm


@pytest.mark.parametrize("fixture_name", ["tiny_mixtral_dir", "tiny_qwen2_moe_dir", "tiny_qwen3_moe_dir"])
def test_moe_logits_match_transformers(fixture_name: str, request: pytest.FixtureRequest) -> None:
    assert max_logit_difference(request.getfixturevalue(fixture_name)) <= ATOL


@pytest.mark.parametrize("fixture_name", ["tiny_mixtral_dir", "tiny_qwen2_moe_dir", "tiny_qwen3_moe_dir"])
def test_moe_greedy_matches_under_batching_with_prefix_hits(
    fixture_name: str, request: pytest.FixtureRequest
) -> None:
    assert_greedy_matches_under_batching(request.getfixturevalue(fixture_name))


def test_mixtral_on_the_kernel_path_gives_the_reference_tokens(tiny_mixtral_dir: Path) -> None:
    """The experts run the fused grouped kernels (no host-side counts): decode graphs are captured."""
    assert_kernel_path_matches_the_reference_path(tiny_mixtral_dir, decode_graphs=True)
