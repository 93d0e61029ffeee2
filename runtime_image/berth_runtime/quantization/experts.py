"""``QuantizedExperts``: one projection of a mixture of experts' stacked experts, held as a
pre-quantized checkpoint stores it (FP8 with a scale per row or per block, or int4 in
``kernels.int4_linear``'s layout) instead of dequantized at load, which held 2x (FP8) to 4x (int4)
the bytes in bf16.

The loader fills its buffers expert by expert (``models.moe`` routes each checkpoint tensor to its
expert's rows); the grouped expert op reads them through ``expert_weights()`` (``kernels.fused_moe``
dequantizes in its inner loop on CUDA, the torch reference per call elsewhere).

Act-order int4 checkpoints (GPTQ, pack-quantized "group") permute each expert's inputs so its groups
are contiguous: one order row per checkpoint tensor fused here (gate and up), as ``Int4Linear``
holds. The kernel gathers a token's activations through one order per expert, so the rows fused
into one expert must agree: GPTQ computes the order from the layer input's Hessian, which gate and up
share, so they do in GPTQ's checkpoints; experts that disagree are refused on the first forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from berth_runtime.kernels.expert_weights import ExpertWeights


class QuantizedExperts(nn.Module):
    weight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    input_permutation: torch.Tensor | None

    def __init__(
        self,
        num_experts: int,
        out_features: int,
        in_features: int,
        device: torch.device,
        group_size: int | None = None,
        shards: int = 0,
        scale_dtype: torch.dtype = torch.float16,
        block_size: tuple[int, int] | None = None,
    ) -> None:
        """Empty buffers the loader fills: FP8 when ``group_size`` is None (a scale per row, or per
        ``block_size`` (rows, columns) block), else int4 with groups of ``group_size`` inputs and,
        when ``shards`` > 0 (act-order possible), one input-order row per checkpoint tensor fused
        into each expert."""
        super().__init__()
        self.in_features, self.out_features, self.block_size = in_features, out_features, block_size
        shape = (num_experts, out_features)
        zero = permutation = None
        if group_size is None:
            weight = torch.empty(*shape, in_features, dtype=torch.float8_e4m3fn, device=device)
            scale_shape = shape
            if block_size is not None:
                rows, columns = block_size
                scale_shape = (num_experts, -(-out_features // rows), -(-in_features // columns))
            scale = torch.empty(*scale_shape, dtype=torch.float32, device=device)
        else:
            groups = in_features // group_size
            weight = torch.empty(*shape, in_features // 8, dtype=torch.int32, device=device)
            scale = torch.empty(*shape, groups, dtype=scale_dtype, device=device)
            zero = torch.empty(*shape, groups, dtype=torch.uint8, device=device)
            if shards:
                permutation = torch.empty(num_experts, shards, in_features, dtype=torch.int32, device=device)
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("zero", zero)
        self.register_buffer("input_permutation", permutation)
        self._order: tuple[torch.device, torch.Tensor | None] | None = None
        """(device, the [experts, in] order the kernel gathers by, or None when every expert's is the
        identity), read once after loading and again after a move to another device."""

    def _input_order(self) -> torch.Tensor | None:
        """Reads the loaded permutation back once (a host sync on the first, eager, forward pass)."""
        device = self.weight.device
        if self._order is None or self._order[0] != device:
            permutation = self.input_permutation
            order = None
            if permutation is not None:
                if not torch.equal(permutation, permutation[:, :1].expand_as(permutation)):
                    raise ValueError(
                        "act-order int4 experts whose fused checkpoint tensors (gate and up) order their "
                        "inputs differently are not supported: the grouped expert kernel gathers one "
                        "input order per expert"
                    )
                identity = torch.arange(self.in_features, device=device, dtype=permutation.dtype)
                if not torch.equal(permutation[:, 0], identity.expand_as(permutation[:, 0])):
                    order = permutation[:, 0].contiguous()
            self._order = (device, order)
        return self._order[1]

    def scale_rows(self, rows: int) -> int:
        """The scale rows of `rows` output rows (one per row, or per block of rows)."""
        return rows if self.block_size is None else rows // self.block_size[0]

    def expert_weights(self) -> ExpertWeights:
        return ExpertWeights(self.weight, self.scale, self.zero, self._input_order(), self.block_size)

    def extra_repr(self) -> str:
        form = f"fp8 blocks {self.block_size}" if self.block_size else "fp8"
        if self.zero is not None:
            form = f"int4 groups of {self.in_features // self.scale.shape[-1]}"
        return (
            f"experts={self.weight.shape[0]}, in_features={self.in_features}, "
            f"out_features={self.out_features}, {form}, act-order={self.input_permutation is not None}"
        )
