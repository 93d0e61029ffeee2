"""Writes small GGUF files for the GGUF tests with the `gguf` package's writer, the way llama.cpp's
converter does: Hugging Face tensor names mapped to llama.cpp's, attn_q / attn_k rows permuted for
llama.cpp's interleaved rope, Llama 3 rope scaling as the `rope_freqs` tensor, the tokenizer as
metadata. Metadata keys are written by name, so each test reads as the format it exercises.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load_file

_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to q/k rows: rotate-half halves -> interleaved pairs."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def llama3_rope_factors(head_dim: int, theta: float, scaling: dict[str, Any]) -> np.ndarray:
    """The `rope_freqs` tensor llama.cpp's converter writes for rope_type llama3 (divisors per frequency)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    factors = []
    for index in range(0, head_dim, 2):
        wavelength = 2 * math.pi * theta ** (index / head_dim)
        if wavelength < old_context / high:
            factors.append(1.0)
        elif wavelength > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def add_tensor(
    writer: gguf.GGUFWriter, name: str, array: np.ndarray, tensor_type: gguf.GGMLQuantizationType
) -> None:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim == 1 or tensor_type == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, array)
    elif tensor_type == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, array.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(array, tensor_type), raw_dtype=tensor_type)


def _tokenizer_metadata(writer: gguf.GGUFWriter, model_dir: Path, pre: str) -> None:
    """tokenizer.json (byte-level BPE, GPT-2 split) and tokenizer_config.json as llama.cpp's keys."""
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    special = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    tokens = [""] * (max([*vocab.values(), *special.values()]) + 1)
    for text, index in [*vocab.items(), *special.items()]:
        tokens[index] = text
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in tokenizer["model"]["merges"]]
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_string("tokenizer.ggml.pre", pre)
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.merges", merges)
    writer.add_array("tokenizer.ggml.token_type", [3 if text in special else 1 for text in tokens])
    writer.add_uint32("tokenizer.ggml.bos_token_id", special[config["bos_token"]])
    writer.add_uint32("tokenizer.ggml.eos_token_id", special[config["eos_token"]])
    writer.add_uint32("tokenizer.ggml.eot_token_id", special["<|im_end|>"])
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_string("tokenizer.chat_template", config["chat_template"])


def gguf_from_hf_llama(
    model_dir: Path,
    path: Path,
    tensor_type: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32,
    pre: str = "gpt-2",
) -> Path:
    """A GGUF of the Llama checkpoint in `model_dir` (one safetensors file); 2-D weights as `tensor_type`,
    the tokenizer (byte-level BPE trained with GPT-2's split) named as pre-tokenizer `pre`."""
    config = json.loads((model_dir / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config["hidden_size"] // heads
    theta = config.get("rope_theta") or config.get("rope_parameters", {}).get("rope_theta", 10000.0)
    writer = gguf.GGUFWriter(path, "llama")
    for key, value in (
        ("llama.context_length", config["max_position_embeddings"]),
        ("llama.embedding_length", config["hidden_size"]),
        ("llama.feed_forward_length", config["intermediate_size"]),
        ("llama.block_count", config["num_hidden_layers"]),
        ("llama.attention.head_count", heads),
        ("llama.attention.head_count_kv", kv_heads),
        ("llama.rope.dimension_count", head_dim),
        ("llama.vocab_size", config["vocab_size"]),
    ):
        writer.add_uint32(key, value)
    writer.add_float32("llama.rope.freq_base", float(theta))
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", config["rms_norm_eps"])
    _tokenizer_metadata(writer, model_dir, pre)
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if scaling.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(head_dim, float(theta), scaling))
    for name, array in load_file(str(model_dir / "model.safetensors")).items():
        if name in _GLOBAL_NAMES:
            add_tensor(writer, _GLOBAL_NAMES[name], array, tensor_type)
            continue
        _, _, layer, rest = name.split(".", 3)
        module, kind = rest.rsplit(".", 1)
        if module == "self_attn.q_proj":
            array = llama_cpp_permute(array, heads)
        elif module == "self_attn.k_proj":
            array = llama_cpp_permute(array, kv_heads)
        add_tensor(writer, f"blk.{layer}.{_LAYER_NAMES[module]}.{kind}", array, tensor_type)
    write(writer)
    return path


def write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def minimal_gguf(
    path: Path,
    metadata: dict[str, Any],
    architecture: str = "llama",
    tensors: dict[str, np.ndarray] | None = None,
) -> Path:
    """A GGUF with the given metadata (str, bool, int as uint32, float as float32, list) and tensors
    (default: one float32 token_embd.weight of 8 tokens x 4)."""
    writer = gguf.GGUFWriter(path, architecture)
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    for name, array in (tensors or {"token_embd.weight": np.zeros((8, 4), dtype=np.float32)}).items():
        writer.add_tensor(name, array)
    write(writer)
    return path
