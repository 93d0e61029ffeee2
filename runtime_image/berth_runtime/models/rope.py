"""A model's rotary position embedding settings and the cos/sin tables built from them: Llama 3,
linear and dynamic-NTK frequency scaling (as Hugging Face computes them, within
max_position_embeddings), or per-frequency divisors given outright (how a GGUF file stores Llama 3
scaling: llama.cpp's `rope_freqs` tensor).

The tables are computed once for every position up to the context limit, when the model is loaded;
applying them (the reference op and the kernels alike) is a gather by position, so chunked prefill
and decode share one code path. Part of the model's definition, like its config: the config readers
(config.json, GGUF) build `RopeScaling`, the model builds the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "llama3")


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


def cos_sin_table(inv_freq: torch.Tensor, max_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [max_positions, head_dim] fp32, halves duplicated (rotate-half layout)."""
    positions = torch.arange(max_positions, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()
