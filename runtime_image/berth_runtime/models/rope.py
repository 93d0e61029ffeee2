"""A model's rotary position embedding settings and the cos/sin tables built from them: Llama 3,
YaRN, LongRoPE, linear and dynamic-NTK frequency scaling (as Hugging Face computes them, within
max_position_embeddings; YaRN and LongRoPE also scale cos and sin), or per-frequency divisors given
outright (how a GGUF file stores Llama 3 scaling: llama.cpp's `rope_freqs` tensor). LongRoPE
switches to its long factors for a sequence past original_max_position_embeddings, which one table
cannot follow: its models are served within that length (`ModelConfig.max_context_len`), where the
short factors apply.

The tables are computed once for every position up to the context limit, when the model is loaded;
applying them (the reference op and the kernels alike) is a gather by position, so chunked prefill
and decode share one code path. Part of the model's definition, like its config: the config readers
(config.json, GGUF) build `RopeScaling`, the model builds the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn", "longrope")


@dataclass(frozen=True)
class RopeScaling:
    """The model's rope settings (from config.json's rope_parameters or rope_theta + rope_scaling)."""

    rope_type: str = "default"
    theta: float = 10000.0
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None
    frequency_factors: tuple[float, ...] | None = None
    """[head_dim // 2] divisors of the inverse frequencies, applied after `rope_type`'s scaling; None for
    none. GGUF files carry Llama 3 scaling this way instead of its parameters."""
    beta_fast: float = 32.0
    """YaRN: rotations per context below which a frequency is fully interpolated (with beta_slow)."""
    beta_slow: float = 1.0
    mscale: float = 0.0
    """YaRN: with mscale_all_dim (both non-zero), the attention factor's numerator and denominator."""
    mscale_all_dim: float = 0.0
    attention_factor: float | None = None
    """YaRN: cos and sin are multiplied by it; None derives it from factor (and mscale)."""
    truncate: bool = True
    """YaRN: round the correction range to whole dimensions."""
    short_factor: tuple[float, ...] | None = None
    """LongRoPE: [rotary_dim // 2] divisors of the inverse frequencies within the original length."""


def inverse_frequencies(head_dim: int, scaling: RopeScaling, max_position_embeddings: int) -> torch.Tensor:
    """[head_dim // 2] fp32 inverse frequencies, scaled as Hugging Face scales them."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim
    # "dynamic" (NTK) scaling only changes the frequencies for sequences longer than
    # max_position_embeddings, which max_model_len never exceeds here: within it, they are the default.
    base = scaling.theta
    inv_freq = 1.0 / (base**exponents)
    if scaling.rope_type == "linear":
        inv_freq = inv_freq / scaling.factor
    elif scaling.rope_type == "llama3":
        inv_freq = _llama3_scaled(inv_freq, scaling, max_position_embeddings)
    elif scaling.rope_type == "yarn":
        inv_freq = _yarn_scaled(inv_freq, head_dim, scaling, max_position_embeddings)
    elif scaling.rope_type == "longrope" and scaling.short_factor is not None:
        inv_freq = inv_freq / torch.tensor(scaling.short_factor, dtype=torch.float32)
    if scaling.frequency_factors is not None:
        inv_freq = inv_freq / torch.tensor(scaling.frequency_factors, dtype=torch.float32)
    return inv_freq


def _llama3_scaled(
    inv_freq: torch.Tensor, scaling: RopeScaling, max_position_embeddings: int
) -> torch.Tensor:
    original_len = scaling.original_max_position_embeddings or max_position_embeddings
    low_freq_wavelen = original_len / scaling.low_freq_factor
    high_freq_wavelen = original_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (original_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _yarn_scaled(
    inv_freq: torch.Tensor, dim: int, scaling: RopeScaling, max_position_embeddings: int
) -> torch.Tensor:
    """YaRN: high frequencies kept (extrapolated), low ones divided by the factor (interpolated), a
    linear ramp between the correction dimensions."""
    original_len = scaling.original_max_position_embeddings or max_position_embeddings

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original_len / (rotations * 2 * math.pi))) / (2 * math.log(scaling.theta))

    low, high = correction_dim(scaling.beta_fast), correction_dim(scaling.beta_slow)
    if scaling.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as transformers: no division by zero
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation_weight = 1 - ramp
    return (inv_freq / scaling.factor) * (1 - extrapolation_weight) + inv_freq * extrapolation_weight


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def attention_scaling(scaling: RopeScaling) -> float:
    """What cos and sin are multiplied by: 1 except for YaRN and LongRoPE."""
    if scaling.rope_type not in ("yarn", "longrope"):
        return 1.0
    if scaling.attention_factor is not None:
        return scaling.attention_factor
    if scaling.rope_type == "longrope":
        original = scaling.original_max_position_embeddings
        if scaling.factor <= 1.0 or not original:
            return 1.0
        return math.sqrt(1 + math.log(scaling.factor) / math.log(original))
    if scaling.mscale and scaling.mscale_all_dim:
        return _yarn_mscale(scaling.factor, scaling.mscale) / _yarn_mscale(
            scaling.factor, scaling.mscale_all_dim
        )
    return _yarn_mscale(scaling.factor)


def cos_sin_table(
    inv_freq: torch.Tensor, max_positions: int, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [max_positions, rotary_dim] fp32, halves duplicated (rotate-half layout), each
    multiplied by `scale` (`attention_scaling`)."""
    positions = torch.arange(max_positions, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    if scale == 1.0:
        return emb.cos(), emb.sin()
    return emb.cos() * scale, emb.sin() * scale


def rope_tables(
    rotary_dim: int, scaling: RopeScaling, max_position_embeddings: int, max_positions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (cos, sin) tables of one rope setting for positions 0 .. max_positions - 1."""
    inv_freq = inverse_frequencies(rotary_dim, scaling, max_position_embeddings)
    return cos_sin_table(inv_freq, max_positions, attention_scaling(scaling))
