"""Tiny random-weight mixture-of-experts checkpoints written with `transformers`, shared by the MoE
family tests and the pre-quantized expert tests, loaded by them as a pytest plugin
(`pytest_plugins = ["moe_checkpoints"]`). Sizes are multiples of 32, so the 4-bit formats' groups
fit every expert projection, the shared expert included."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_family_checks import write_family_model


@pytest.fixture(scope="module")
def tiny_mixtral_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import MixtralConfig, MixtralForCausalLM

    return write_family_model(
        tmp_path_factory.mktemp("tiny-mixtral"),
        MixtralConfig,
        MixtralForCausalLM,
        num_local_experts=4,
        num_experts_per_tok=2,
    )


@pytest.fixture(scope="module")
def tiny_qwen2_moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    return write_family_model(
        tmp_path_factory.mktemp("tiny-qwen2-moe"),
        Qwen2MoeConfig,
        Qwen2MoeForCausalLM,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=64,
        mlp_only_layers=[1],
    )
