"""RMSNorm, plain and fused with the residual add (the add+norm pair every decoder layer starts with)."""

from __future__ import annotations

import torch


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """hidden: [tokens, hidden_size] -> same shape; statistics in fp32 as Hugging Face computes them."""
    input_dtype = hidden.dtype
    hidden_fp32 = hidden.to(torch.float32)
    variance = hidden_fp32.pow(2).mean(-1, keepdim=True)
    normed = hidden_fp32 * torch.rsqrt(variance + eps)
    return weight * normed.to(input_dtype)


def add_rms_norm(
    hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (rms_norm(hidden + residual), hidden + residual): the new normed input and residual."""
    summed = hidden + residual
    return rms_norm(summed, weight, eps), summed
