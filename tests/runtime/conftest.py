"""Tiny real models for the runtime tests: random-weight Llama and Qwen2 checkpoints written by
`transformers` (the reference implementation) beside a real BPE `tokenizer.json` trained with the
`tokenizers` library and a `tokenizer_config.json` carrying a chat template.

Session-scoped, so each model is written once per test run; the server tests reuse
`tiny_llama_dir` and `tiny_qwen2_dir`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tokenizers
import torch
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes schedules pods onto nodes with GPUs; the operator scales them.",
    "A paged KV cache stores keys and values in fixed-size blocks.",
    "Continuous batching lets requests join and leave the running batch every step.",
    "Prefix caching reuses blocks whose tokens were already computed.",
    "Héllo wörld — naïve café, 東京, emoji 🚀 and numbers 12345.",
]
TINY_VOCAB_SIZE = 320


def build_tokenizer(directory: Path) -> tokenizers.Tokenizer:
    """A byte-level BPE (so every string round-trips) with Llama-style BOS insertion."""
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT * 4, trainer=trainer)
    bos_id = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "chat_template": CHATML_TEMPLATE,
                "tokenizer_class": "PreTrainedTokenizerFast",
            }
        )
    )
    return tokenizer


def write_tiny_model(
    directory: Path,
    config_class: Callable[..., Any],
    model_class: Callable[..., Any],
    max_shard_size: str | None = None,
    **config_overrides: Any,
) -> Path:
    """Writes a random-weight checkpoint plus tokenizer files to `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    bos_id, eos_id = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    settings: dict[str, Any] = {
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        # Wider than the usual 0.02 so logits are well separated and greedy choices are stable.
        "initializer_range": 0.2,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        **config_overrides,
    }
    torch.manual_seed(0)
    model = model_class(config_class(**settings)).eval()
    with torch.no_grad():  # random norms and biases too, so a mis-loaded one changes the output
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith(".bias"):
                param.copy_(0.1 * torch.randn_like(param))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    generation_config = {
        "bos_token_id": bos_id,
        "eos_token_id": [eos_id, tokenizer.token_to_id("<|im_end|>")],
    }
    (directory / "generation_config.json").write_text(json.dumps(generation_config))
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama (GQA 4/2 heads, untied embeddings, llama3 rope scaling), single safetensors file."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return write_tiny_model(
        tmp_path_factory.mktemp("tiny-llama"),
        LlamaConfig,
        LlamaForCausalLM,
        tie_word_embeddings=False,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 4.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 128,
        },
    )


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2 (q/k/v bias, tied embeddings), sharded safetensors with an index file."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return write_tiny_model(
        tmp_path_factory.mktemp("tiny-qwen2"),
        Qwen2Config,
        Qwen2ForCausalLM,
        max_shard_size="100KB",
        tie_word_embeddings=True,
    )
