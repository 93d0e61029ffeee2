"""The model registry and what every family shares: config.json's architecture picks the family (an
unknown one fails naming the supported ones), each rope_scaling variant gives transformers'
frequencies and cos/sin scale, and a family's chat template is the checkpoint's own, rendered as
transformers renders it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import build_tokenizer

from berth_runtime.models.model_config import (
    ModelDirectoryError,
    UnsupportedModelError,
    load_model_config,
    parse_rope,
)
from berth_runtime.models.registry import ARCHITECTURES, SUPPORTED_ARCHITECTURES
from berth_runtime.models.rope import attention_scaling, inverse_frequencies
from berth_runtime.tokenizer import Tokenizer

# Gemma's published template: system turn folded into the first user turn, roles alternate.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _write_config(directory: Path, **config: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    settings = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 320,
        **config,
    }
    (directory / "config.json").write_text(json.dumps(settings))
    return directory


def test_every_family_architecture_is_registered_once() -> None:
    assert set(SUPPORTED_ARCHITECTURES) >= {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Phi3ForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "MixtralForCausalLM",
        "Qwen2MoeForCausalLM",
        "Qwen3MoeForCausalLM",
    }
    assert len(SUPPORTED_ARCHITECTURES) == len(set(SUPPORTED_ARCHITECTURES))
    assert ARCHITECTURES["Qwen3ForCausalLM"].name == "qwen3"


def test_an_unknown_architecture_fails_naming_the_supported_ones(tmp_path: Path) -> None:
    model_dir = _write_config(tmp_path, architectures=["DeepseekV3ForCausalLM"])
    with pytest.raises(UnsupportedModelError) as error:
        load_model_config(model_dir)
    message = str(error.value)
    assert "'DeepseekV3ForCausalLM' is not supported" in message
    assert all(architecture in message for architecture in SUPPORTED_ARCHITECTURES)


@pytest.mark.parametrize(
    ("architecture", "activation", "accepted"),
    [("Gemma2ForCausalLM", "silu", "gelu_pytorch_tanh"), ("Qwen3ForCausalLM", "gelu", "silu")],
)
def test_a_family_refuses_an_activation_it_does_not_run(
    tmp_path: Path, architecture: str, activation: str, accepted: str
) -> None:
    model_dir = _write_config(tmp_path, architectures=[architecture], hidden_act=activation)
    with pytest.raises(ModelDirectoryError, match=f"hidden_act '{activation}'.*accepted: {accepted}"):
        load_model_config(model_dir)


@pytest.mark.parametrize(
    "rope_parameters",
    [
        {"rope_type": "linear", "factor": 4.0},
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 64},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128},
        {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64, "beta_fast": 16,
         "beta_slow": 2, "mscale": 0.8, "mscale_all_dim": 0.5},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128, "attention_factor": 1.5,
         "truncate": False},
        {"rope_type": "longrope", "original_max_position_embeddings": 128,
         "short_factor": [1.0 + index / 8 for index in range(32)], "long_factor": [4.0] * 32},
    ],
)  # fmt: skip
def test_rope_scaling_gives_transformers_frequencies_and_scale(rope_parameters: dict[str, Any]) -> None:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"rope_theta": 50000.0, **rope_parameters}
    config = LlamaConfig(
        hidden_size=256, num_attention_heads=4, max_position_embeddings=512, rope_parameters=params
    )
    expected_inv_freq, expected_scale = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, "cpu")
    scaling = parse_rope(config.rope_parameters, config.to_dict(), Path("config.json"))
    torch.testing.assert_close(inverse_frequencies(64, scaling, 512), expected_inv_freq, rtol=1e-6, atol=0)
    assert attention_scaling(scaling) == pytest.approx(expected_scale)


def test_the_chat_template_is_the_checkpoints_own(tmp_path: Path) -> None:
    """A Gemma checkpoint's template (turn markers, system folded into the first user turn) renders as
    transformers renders it from the same directory."""
    from transformers import AutoTokenizer

    build_tokenizer(tmp_path)
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    tokenizer_config["chat_template"] = GEMMA_TEMPLATE
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    _write_config(tmp_path, architectures=["Gemma3ForCausalLM"])
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a KV cache?"},
        {"role": "assistant", "content": "Keys and values. "},
        {"role": "user", "content": "Why paged?"},
    ]
    ours = Tokenizer(tmp_path).apply_chat_template(messages)
    reference = AutoTokenizer.from_pretrained(tmp_path).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert ours == reference
    assert ours.startswith("<s><start_of_turn>user\nBe brief.\n\nWhat is a KV cache?<end_of_turn>")
    assert ours.endswith("<start_of_turn>model\n")
