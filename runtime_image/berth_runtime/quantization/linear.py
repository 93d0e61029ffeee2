"""``WeightOnlyLinear``: the drop-in replacement for ``nn.Linear`` with quantized weights.

It holds ``qweight`` (int8 or float8_e4m3fn, [out, in]), ``scale`` (float32, [out]; or for
block-wise FP8 checkpoints, held as stored, [ceil(out / rows), ceil(in / columns)] per ``block_size``
block) and an optional bias as buffers, so ``model.to(device)`` and ``state_dict`` carry them. On
CUDA the forward pass is the Triton weight-only kernel; on other devices it is the float32 reference
(the CPU build's path and the tests' oracle). Inputs of any leading shape are flattened to rows like
``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import nn

from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.weight_only_linear import weight_only_linear
from berth_runtime.quantization.quantize import quantize_fp8, quantize_int8

_QUANTIZERS = {"int8": quantize_int8, "fp8": quantize_fp8}


class WeightOnlyLinear(nn.Module):
    qweight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        qweight: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        block_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.block_size = block_size
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, method: str) -> WeightOnlyLinear:
        """Quantizes ``linear``'s weight with ``method`` ("int8" or "fp8"), keeping its bias as is."""
        quantizer = _QUANTIZERS.get(method)
        if quantizer is None:
            accepted = ", ".join(_QUANTIZERS)
            raise ValueError(f"quantization method {method!r} is not supported; accepted: {accepted}")
        qweight, scale = quantizer(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(qweight, scale, bias)

    @classmethod
    def empty_fp8(cls, linear: nn.Linear, block_size: tuple[int, int] | None = None) -> WeightOnlyLinear:
        """Empty float8 weights and scales (a row each, or per ``block_size`` block) in ``linear``'s
        shape and place, keeping its bias, for a loader to fill from a checkpoint as stored."""
        device, (rows, columns) = linear.weight.device, block_size or (1, linear.in_features)
        qweight = torch.empty(linear.weight.shape, dtype=torch.float8_e4m3fn, device=device)
        scale_shape = (-(-linear.out_features // rows), -(-linear.in_features // columns))
        scale = torch.empty(
            scale_shape if block_size else scale_shape[:1], dtype=torch.float32, device=device
        )
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(qweight, scale, bias, block_size)

    def scale_rows(self, rows: int) -> int:
        """Scale rows of ``rows`` output rows (one per row, or per block of rows): where a part fused
        into this linear (q/k/v, gate/up) finds its scales."""
        return rows if self.block_size is None else rows // self.block_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.device.type == "cuda":
            out = weight_only_linear(rows, self.qweight, self.scale, self.bias, block_size=self.block_size)
        else:
            out = torch_reference.weight_only_linear(
                rows, self.qweight, self.scale, self.bias, self.block_size
            )
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"weight={self.qweight.dtype}, bias={self.bias is not None}"
            + (f", block_size={self.block_size}" if self.block_size else "")
        )
