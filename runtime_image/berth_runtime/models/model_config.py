"""The architecture description read from a model directory's config.json, validated up front.

Everything the engine needs about a model (shapes, rope, biases, context limit, EOS ids) is parsed
here once; an unsupported architecture or a malformed config fails at start with a message that
names the file, the field and what is accepted. The fields every family shares are read here; each
family module (`berth_runtime.models.registry`) reads what only its checkpoints carry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth_runtime.models.rope import SUPPORTED_ROPE_TYPES, RopeScaling

if TYPE_CHECKING:
    from berth_runtime.models.prequantized import PreQuantization


class ModelDirectoryError(ValueError):
    """The model directory is missing something or holds something this runtime cannot load."""


class UnsupportedModelError(ModelDirectoryError):
    """A readable model this runtime does not serve -- an architecture no family registers, an
    activation or rope type its family does not run, a quantization format or GGUF variant it cannot
    load: a spec error known before any weight is read. The server exits 2, as for a refused flag
    (the operator reports it as ConfigurationRefused); the message lists what is accepted."""


@dataclass(frozen=True)
class MixtureOfExperts:
    """The sparse MLP of a mixture-of-experts model (Mixtral, Qwen2-MoE, Qwen3-MoE)."""

    num_experts: int
    experts_per_token: int
    """Top-k: the experts each token is routed to."""
    intermediate_size: int
    """Of each expert."""
    normalize_top_k: bool
    """Renormalize the chosen experts' router probabilities to sum to 1 (Mixtral always does)."""
    sparse_layers: tuple[bool, ...]
    """Per layer, whether its MLP is the experts (else the dense MLP of `intermediate_size`)."""
    shared_expert_intermediate_size: int = 0
    """A dense expert every token also goes through, scaled by a sigmoid gate (Qwen2-MoE); 0 for none."""


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
    """A window over the whole model that caps the context (Mistral): within it, attention is full."""
    eos_token_ids: tuple[int, ...]
    hidden_act: str = "silu"
    """The gated MLP's activation: "silu" or "gelu_pytorch_tanh" (GeGLU)."""
    rotary_dim: int | None = None
    """Leading dimensions of each head that rope rotates; None for all (partial_rotary_factor < 1)."""
    qk_norm: bool = False
    """Per-head RMSNorm of queries and keys before rope (Qwen3, Gemma 3)."""
    query_pre_attn_scalar: float | None = None
    """Attention scores are scaled by its -1/2 power; None for head_dim's (Gemma)."""
    attention_logit_softcap: float | None = None
    """Scores become cap * tanh(scores / cap) before the softmax (Gemma 2)."""
    final_logit_softcap: float | None = None
    """Logits become cap * tanh(logits / cap) (Gemma 2)."""
    layer_sliding_windows: tuple[int | None, ...] | None = None
    """Per layer, the keys a query sees (itself and the window - 1 before it), None for all: masked in
    the attention path (Gemma's local layers); unlike `sliding_window` it caps no context."""
    local_rope: RopeScaling | None = None
    """The rope of the sliding-window layers when it differs from `rope` (Gemma 3)."""
    moe: MixtureOfExperts | None = None
    """The experts of a mixture-of-experts model; None for a dense one."""
    prequantization: PreQuantization | None = None
    """How the checkpoint's weights are stored quantized (config.json's quantization_config)."""

    @property
    def max_context_len(self) -> int:
        """The longest context the model attends correctly (a sliding window caps it: full attention
        over the window is what the model computes within it)."""
        limit = self.max_position_embeddings
        if self.sliding_window is not None:
            limit = min(limit, self.sliding_window)
        original = self.rope.original_max_position_embeddings
        if self.rope.rope_type == "longrope" and original:  # its long factors are not served (rope.py)
            limit = min(limit, original)
        return limit


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


def positive_int(config: dict[str, Any], name: str, path: Path, default: int | None = None) -> int:
    value = config.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelDirectoryError(f"{path}: field {name!r} is {value!r}; accepted: an integer >= 1")
    return value


def optional_number(config: dict[str, Any], name: str, path: Path) -> float | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ModelDirectoryError(f"{path}: field {name!r} is {value!r}; accepted: null or a number > 0")
    return float(value)


def activation(config: dict[str, Any], path: Path, accepted: tuple[str, ...]) -> str:
    """The MLP activation (`hidden_activation` or `hidden_act`), one of `accepted` (the first is the
    default)."""
    value = config.get("hidden_activation") or config.get("hidden_act") or accepted[0]
    if value not in accepted:
        raise UnsupportedModelError(
            f"{path}: hidden_act {value!r} is not supported for {config['architectures'][0]}; "
            f"accepted: {', '.join(accepted)}"
        )
    return str(value)


def rope_parameters(config: dict[str, Any]) -> Any:
    """transformers >= 5 writes rope_parameters (theta included); older configs rope_theta + rope_scaling."""
    return config.get("rope_parameters") or config.get("rope_scaling") or {}


def parse_rope(
    params: Any, config: dict[str, Any], path: Path, default_theta: float | None = None
) -> RopeScaling:
    """One rope setting from its parameters object; theta falls back to `default_theta`, then to
    config.json's rope_theta, then to 10000."""
    if not isinstance(params, dict):
        raise ModelDirectoryError(f"{path}: rope_parameters/rope_scaling is {params!r}; accepted: an object")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModelError(
            f"{path}: rope type {rope_type!r} is not supported; accepted: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    theta = params.get("rope_theta", default_theta or config.get("rope_theta", 10000.0))
    original = params.get("original_max_position_embeddings")
    if rope_type == "longrope":  # Phi-3 writes it beside the rope parameters
        original = original or config.get("original_max_position_embeddings")
    factor = params.get("factor")
    if factor is None and rope_type in ("yarn", "longrope") and original:  # transformers derives it so
        factor = config.get("max_position_embeddings", original) / original
    short_factor = params.get("short_factor")
    if rope_type == "longrope" and (not isinstance(short_factor, list) or not original):
        raise ModelDirectoryError(
            f"{path}: longrope needs short_factor (a list) and original_max_position_embeddings; "
            f"found {short_factor!r} and {original!r}"
        )
    attention_factor = params.get("attention_factor")
    return RopeScaling(
        rope_type=rope_type,
        theta=float(theta),
        factor=float(factor if factor is not None else 1.0),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(original) if original is not None else None,
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        mscale=float(params.get("mscale") or 0.0),
        mscale_all_dim=float(params.get("mscale_all_dim") or 0.0),
        attention_factor=float(attention_factor) if attention_factor is not None else None,
        truncate=bool(params.get("truncate", True)),
        short_factor=tuple(float(value) for value in short_factor) if rope_type == "longrope" else None,
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
    # The family and quantization modules import this one, so they are imported when it is used.
    from berth_runtime.models.prequantized import read_prequantization
    from berth_runtime.models.registry import family_for

    family = family_for(architecture, path)
    hidden_size = positive_int(config, "hidden_size", path)
    num_heads = positive_int(config, "num_attention_heads", path)
    num_kv_heads = positive_int(config, "num_key_value_heads", path, default=num_heads)
    if num_heads % num_kv_heads != 0:
        raise ModelDirectoryError(
            f"{path}: num_attention_heads={num_heads} is not a multiple of num_key_value_heads={num_kv_heads}"
        )
    head_dim = int(config.get("head_dim") or hidden_size // num_heads)
    sliding_window = config.get("sliding_window") or None  # Qwen2-MoE writes 0 for none
    if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window < 1):
        raise ModelDirectoryError(
            f"{path}: sliding_window is {sliding_window!r}; accepted: null or an integer >= 1"
        )
    rope = rope_parameters(config)
    partial = (rope.get("partial_rotary_factor") if isinstance(rope, dict) else None) or config.get(
        "partial_rotary_factor", 1.0
    )
    rotary_dim = int(head_dim * float(partial))
    attention_bias = bool(config.get("attention_bias", False))
    fields: dict[str, Any] = {
        "architecture": architecture,
        "vocab_size": positive_int(config, "vocab_size", path),
        "hidden_size": hidden_size,
        "intermediate_size": positive_int(config, "intermediate_size", path),
        "num_layers": positive_int(config, "num_hidden_layers", path),
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": float(config.get("rms_norm_eps", 1e-6)),
        "max_position_embeddings": positive_int(config, "max_position_embeddings", path, default=2048),
        "rope": parse_rope(rope, config, path),
        "rotary_dim": rotary_dim if rotary_dim < head_dim else None,
        "qkv_bias": attention_bias,
        "o_proj_bias": attention_bias,
        "mlp_bias": bool(config.get("mlp_bias", False)),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "sliding_window": sliding_window,
        "eos_token_ids": _ids(config.get("eos_token_id")),
        "prequantization": read_prequantization(config, path),
    }
    fields.update(family.config_fields(str(architecture), config, path))
    return ModelConfig(**fields)
