"""The architecture description read from a model directory's config.json, validated up front.

Everything the engine needs about a model (shapes, rope, biases, context limit, EOS ids) is parsed
here once; an unsupported architecture or a malformed config fails at start with a message that
names the file, the field and what is accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth_runtime.models.rope import SUPPORTED_ROPE_TYPES, RopeScaling

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


class ModelDirectoryError(ValueError):
    """The model directory is missing something or holds something this runtime cannot load."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    rope: RopeScaling
    qkv_bias: bool
    o_proj_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    sliding_window: int | None
    eos_token_ids: tuple[int, ...]

    @property
    def max_context_len(self) -> int:
        """The longest context the model attends correctly (a sliding window caps it: full attention
        over the window is what the model computes within it)."""
        if self.sliding_window is not None:
            return min(self.max_position_embeddings, self.sliding_window)
        return self.max_position_embeddings


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelDirectoryError(
            f"{path} is missing; a Hugging Face layout model directory needs it"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelDirectoryError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ModelDirectoryError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def _int_field(config: dict[str, Any], name: str, path: Path, default: int | None = None) -> int:
    value = config.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelDirectoryError(f"{path}: field {name!r} is {value!r}; accepted: an integer >= 1")
    return value


def _rope(config: dict[str, Any], path: Path) -> RopeScaling:
    # transformers >= 5 writes rope_parameters (theta included); older configs rope_theta + rope_scaling.
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ModelDirectoryError(f"{path}: rope_parameters/rope_scaling is {params!r}; accepted: an object")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ModelDirectoryError(
            f"{path}: rope type {rope_type!r} is not supported; accepted: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    original = params.get("original_max_position_embeddings")
    return RopeScaling(
        rope_type=rope_type,
        theta=float(theta),
        factor=float(params.get("factor", 1.0)),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(original) if original is not None else None,
    )


def _ids(value: object) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))
    return ()


def load_model_config(model_dir: Path) -> ModelConfig:
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise ModelDirectoryError(f"model directory {model_dir} does not exist or is not a directory")
    config = read_json(path)
    architectures = config.get("architectures") or []
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ModelDirectoryError(
            f"{path}: architecture {architecture!r} is not supported by this runtime; "
            f"accepted: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    hidden_act = config.get("hidden_act", "silu")
    if hidden_act != "silu":
        raise ModelDirectoryError(f"{path}: hidden_act {hidden_act!r} is not supported; accepted: silu")
    hidden_size = _int_field(config, "hidden_size", path)
    num_heads = _int_field(config, "num_attention_heads", path)
    num_kv_heads = _int_field(config, "num_key_value_heads", path, default=num_heads)
    if num_heads % num_kv_heads != 0:
        raise ModelDirectoryError(
            f"{path}: num_attention_heads={num_heads} is not a multiple of num_key_value_heads={num_kv_heads}"
        )
    head_dim = config.get("head_dim") or hidden_size // num_heads
    is_qwen2 = architecture == "Qwen2ForCausalLM"
    sliding_window = config.get("sliding_window")
    if is_qwen2 and not config.get("use_sliding_window", False):
        sliding_window = None
    if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window < 1):
        raise ModelDirectoryError(
            f"{path}: sliding_window is {sliding_window!r}; accepted: null or an integer >= 1"
        )
    attention_bias = bool(config.get("attention_bias", False))
    return ModelConfig(
        architecture=architecture,
        vocab_size=_int_field(config, "vocab_size", path),
        hidden_size=hidden_size,
        intermediate_size=_int_field(config, "intermediate_size", path),
        num_layers=_int_field(config, "num_hidden_layers", path),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=int(head_dim),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=_int_field(config, "max_position_embeddings", path, default=2048),
        rope=_rope(config, path),
        qkv_bias=is_qwen2 or attention_bias,
        o_proj_bias=attention_bias and not is_qwen2,
        mlp_bias=bool(config.get("mlp_bias", False)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        sliding_window=sliding_window,
        eos_token_ids=_ids(config.get("eos_token_id")),
    )
