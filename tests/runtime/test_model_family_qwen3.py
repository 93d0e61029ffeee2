"""Qwen3 (per-head q/k RMSNorm before rope) with YaRN rope scaling: logits equal transformers' at fp32
through the engine path, and greedy tokens equal under continuous batching with prefix hits."""

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


@pytest.fixture(scope="module")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    yarn = {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 128,
        "rope_theta": 10000.0,
    }
    return write_family_model(
        tmp_path_factory.mktemp("tiny-qwen3"), Qwen3Config, Qwen3ForCausalLM, rope_parameters=yarn
    )


def test_qwen3_config_has_qk_norm_and_yarn(tiny_qwen3_dir: Path) -> None:
    config = load_model_config(tiny_qwen3_dir)
    assert config.qk_norm and config.rope.rope_type == "yarn" and config.rope.factor == 4.0


def test_qwen3_logits_match_transformers(tiny_qwen3_dir: Path) -> None:
    assert max_logit_difference(tiny_qwen3_dir) <= ATOL


def test_qwen3_greedy_matches_under_batching_with_prefix_hits(tiny_qwen3_dir: Path) -> None:
    assert_greedy_matches_under_batching(tiny_qwen3_dir)


def test_qwen3_on_the_kernel_path_gives_the_reference_tokens(tiny_qwen3_dir: Path) -> None:
    assert_kernel_path_matches_the_reference_path(tiny_qwen3_dir, decode_graphs=True)
