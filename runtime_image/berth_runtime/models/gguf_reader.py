"""Opens a GGUF file (llama.cpp's single-file format) and reads the model's `ModelConfig` from it.

A GGUF file holds in one file what a Hugging Face directory spreads over config.json, safetensors
and tokenizer.json, under llama.cpp's key and tensor names. This module reads and validates the
metadata once, so an architecture or a setting the runtime cannot serve fails at start with the file,
the key and what is accepted; gguf_weights.py maps the tensors onto the model and gguf_tokenizer.py
builds the tokenizer. `gguf.GGUFReader` memory-maps the file: opening it reads the header and the
metadata, and tensor data is read only when a tensor is dequantized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

from berth_runtime.models.model_config import ModelConfig, ModelDirectoryError, UnsupportedModelError
from berth_runtime.models.rope import RopeScaling

GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"
SUPPORTED_GGUF_ARCHITECTURES = ("llama",)
"""`general.architecture` values this runtime serves (Llama 2/3, Mistral and SmolLM files use "llama")."""
SUPPORTED_GGUF_ROPE_SCALING = ("none", "linear")
# The model class the GGUF architecture maps onto (the name logs and messages show).
_MODEL_ARCHITECTURE = {"llama": "LlamaForCausalLM"}
_MISSING = object()


def is_gguf_file(path: Path) -> bool:
    """Whether `path` is a file that starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as file:
            return file.read(len(GGUF_MAGIC)) == GGUF_MAGIC
    except OSError:
        return False


class GGUFModelFile:
    """One opened GGUF file: typed metadata access, tensors by GGUF name, and the model's config."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.reader = gguf.GGUFReader(path)
        except (OSError, ValueError, IndexError, KeyError, TypeError) as error:
            raise ModelDirectoryError(f"{path} is not a readable GGUF file: {error}") from None
        self.tensors = {tensor.name: tensor for tensor in self.reader.tensors}
        self.architecture = self.string("general.architecture")
        if self.architecture not in SUPPORTED_GGUF_ARCHITECTURES:
            raise UnsupportedModelError(
                f"{path}: GGUF architecture {self.architecture!r} (general.architecture) is not supported "
                f"by this runtime; accepted: {', '.join(SUPPORTED_GGUF_ARCHITECTURES)}"
            )
        if self.value("split.count", 1) != 1:
            raise ModelDirectoryError(
                f"{path} is one part of a split GGUF model (split.count={self.value('split.count')}); "
                "accepted: a single-file GGUF (merge the parts with llama.cpp's `llama-gguf-split --merge`)"
            )
        self.config = self._model_config()

    def value(self, key: str, default: Any = _MISSING) -> Any:
        """The metadata value under `key` (str, int, float, bool or a list); `default` if absent."""
        field = self.reader.fields.get(key)
        if field is None:
            if default is _MISSING:
                raise ModelDirectoryError(f"{self.path}: GGUF metadata key {key!r} is missing")
            return default
        return field.contents()

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self.value(key, default)
        if value is not default and not isinstance(value, str):
            raise ModelDirectoryError(f"{self.path}: GGUF key {key!r} is {value!r}; accepted: a string")
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 1) -> Any:
        value = self.value(key, default)
        if value is default:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ModelDirectoryError(
                f"{self.path}: GGUF key {key!r} is {value!r}; accepted: an integer >= {minimum}"
            )
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        value = self.value(key, default)
        if value is default:
            return value
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ModelDirectoryError(f"{self.path}: GGUF key {key!r} is {value!r}; accepted: a number > 0")
        return float(value)

    def token_ids(self, *keys: str) -> tuple[int, ...]:
        """The token ids under `keys` that are present, in order, without repeats."""
        ids = [self.integer(key, None, minimum=0) for key in keys]
        return tuple(dict.fromkeys(token_id for token_id in ids if token_id is not None))

    def tensor_rows(self, name: str) -> int:
        """The outer dimension of a tensor (GGUF lists dimensions innermost first)."""
        return int(self.tensors[name].shape[-1])

    def _model_config(self) -> ModelConfig:
        arch = self.architecture
        if self.integer(f"{arch}.expert_count", 0, minimum=0) > 0:
            raise UnsupportedModelError(
                f"{self.path}: a mixture-of-experts model ({arch}.expert_count="
                f"{self.value(f'{arch}.expert_count')}) is not supported; accepted: dense Llama models"
            )
        if "token_embd.weight" not in self.tensors:
            raise ModelDirectoryError(f"{self.path}: the GGUF file has no token_embd.weight tensor")
        hidden_size = self.integer(f"{arch}.embedding_length")
        num_heads = self.integer(f"{arch}.attention.head_count")
        num_kv_heads = self.value(f"{arch}.attention.head_count_kv", num_heads)
        if isinstance(num_kv_heads, list):
            raise ModelDirectoryError(
                f"{self.path}: per-layer {arch}.attention.head_count_kv is not supported; "
                "accepted: one integer"
            )
        num_kv_heads = self.integer(f"{arch}.attention.head_count_kv", num_heads)
        if num_heads % num_kv_heads != 0:
            raise ModelDirectoryError(
                f"{self.path}: {arch}.attention.head_count={num_heads} is not a multiple of "
                f"{arch}.attention.head_count_kv={num_kv_heads}"
            )
        head_dim = self.integer(f"{arch}.attention.key_length", hidden_size // num_heads)
        for key in (f"{arch}.attention.value_length", f"{arch}.rope.dimension_count"):
            if self.integer(key, head_dim) != head_dim:
                raise ModelDirectoryError(
                    f"{self.path}: {key}={self.value(key)} differs from the head size {head_dim}; "
                    "accepted: equal (partial rotary and unequal key/value heads are not supported)"
                )
        max_positions = self.integer(f"{arch}.context_length")
        return ModelConfig(
            architecture=_MODEL_ARCHITECTURE[arch],
            vocab_size=self.integer(f"{arch}.vocab_size", self.tensor_rows("token_embd.weight")),
            hidden_size=hidden_size,
            intermediate_size=self.integer(f"{arch}.feed_forward_length"),
            num_layers=self.integer(f"{arch}.block_count"),
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            rms_norm_eps=self.number(f"{arch}.attention.layer_norm_rms_epsilon"),
            max_position_embeddings=max_positions,
            rope=self._rope(head_dim),
            # llama.cpp's llama graph takes these biases when the file has them.
            qkv_bias="blk.0.attn_q.bias" in self.tensors,
            o_proj_bias="blk.0.attn_output.bias" in self.tensors,
            mlp_bias="blk.0.ffn_up.bias" in self.tensors,
            tie_word_embeddings="output.weight" not in self.tensors,
            sliding_window=None,
            eos_token_ids=self.token_ids(
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"
            ),
        )

    def _rope(self, head_dim: int) -> RopeScaling:
        arch = self.architecture
        scaling_type = self.string(f"{arch}.rope.scaling.type", "none")
        factor = self.number(f"{arch}.rope.scaling.factor", None)
        if factor is None:
            factor = self.number(f"{arch}.rope.scale_linear", None)  # the key older files write
            if factor is not None and scaling_type == "none":
                scaling_type = "linear"
        if scaling_type not in SUPPORTED_GGUF_ROPE_SCALING:
            raise UnsupportedModelError(
                f"{self.path}: {arch}.rope.scaling.type {scaling_type!r} is not supported; accepted: "
                f"{', '.join(SUPPORTED_GGUF_ROPE_SCALING)} (Llama 3 scaling comes as the rope_freqs tensor)"
            )
        return RopeScaling(
            rope_type="linear" if scaling_type == "linear" else "default",
            theta=self.number(f"{arch}.rope.freq_base", 10000.0),
            factor=factor if scaling_type == "linear" and factor is not None else 1.0,
            frequency_factors=self._frequency_factors(head_dim),
        )

    def _frequency_factors(self, head_dim: int) -> tuple[float, ...] | None:
        """llama.cpp's `rope_freqs` tensor: what each inverse frequency is divided by (Llama 3 scaling)."""
        tensor = self.tensors.get("rope_freqs.weight")
        if tensor is None:
            return None
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or tensor.n_elements != head_dim // 2:
            raise ModelDirectoryError(
                f"{self.path}: rope_freqs.weight is {tensor.tensor_type.name} with {tensor.n_elements} "
                f"elements; accepted: F32 with head_dim / 2 = {head_dim // 2}"
            )
        return tuple(float(x) for x in np.asarray(tensor.data, dtype=np.float32).reshape(-1))
