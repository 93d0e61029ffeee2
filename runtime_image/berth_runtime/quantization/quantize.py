"""Per-output-channel symmetric weight quantization: int8 and fp8 (e4m3).

One scale per output row keeps the product exact up to rounding of the weights alone:
``y[n] = scale[n] * sum_k x[k] * q[n, k]``, so the kernel applies the scale once per output. The
scale maps each row's largest magnitude onto the format's largest value (127 for int8, 448 for
e4m3); all-zero rows get scale 1 so dequantization stays finite.
"""

from __future__ import annotations

import torch

INT8_MAX = 127.0
FP8_E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448


def _row_scales(weight: torch.Tensor, format_max: float) -> torch.Tensor:
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [out_features, in_features]; got shape {list(weight.shape)}")
    if not weight.is_floating_point():
        raise ValueError(f"weight must be a floating-point tensor; got dtype {weight.dtype}")
    absmax = weight.detach().to(torch.float32).abs().amax(dim=1)
    if not torch.isfinite(absmax).all():
        raise ValueError("weight holds NaN or infinite values; refusing to quantize it")
    return torch.where(absmax > 0, absmax / format_max, torch.ones_like(absmax))


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` [out, in] float -> (int8 [out, in], float32 scale [out]), round to nearest."""
    scale = _row_scales(weight, INT8_MAX)
    quantized = torch.round(weight.detach().to(torch.float32) / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX)
    return quantized.to(torch.int8).contiguous(), scale.contiguous()


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` [out, in] float -> (float8_e4m3fn [out, in], float32 scale [out]), round to nearest."""
    scale = _row_scales(weight, FP8_E4M3_MAX)
    scaled = (weight.detach().to(torch.float32) / scale[:, None]).clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX)
    return scaled.to(torch.float8_e4m3fn).contiguous(), scale.contiguous()


def dequantize(quantized: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weight the quantized pair stands for, [out, in] in ``dtype``."""
    return (quantized.to(torch.float32) * scale[:, None]).to(dtype)
