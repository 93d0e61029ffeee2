"""Writes a random-weight Llama with a word-level tokenizer to a directory: the model the CPU engine
benchmarks (engine_throughput.py, speculative.py) load, made here once so their figures come from the
same kind of model."""

from __future__ import annotations

from pathlib import Path

import tokenizers
import torch
from tokenizers import models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM


def write_model(
    directory: Path, hidden_size: int, layers: int, vocab_size: int, init_range: float = 0.2
) -> None:
    """Tokens are `w0`..`w{vocab_size-1}`; `init_range` is the weights' standard deviation."""
    vocab = {f"w{index}": index for index in range(vocab_size)}
    tokenizer = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden_size // 64, 1),
        num_key_value_heads=max(hidden_size // 128, 1),
        max_position_embeddings=1024,
        initializer_range=init_range,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
