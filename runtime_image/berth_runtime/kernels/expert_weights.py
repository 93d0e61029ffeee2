"""``ExpertWeights``: one projection of every expert of a mixture of experts, stacked, as the grouped
expert op takes it when a pre-quantized checkpoint's experts are kept as stored (no float copy).

A plain float tensor [experts, out, in] is still accepted wherever this is; the quantized forms hold
the same layouts as the decoder's quantized linears, one more leading expert dimension:

- FP8 (compressed-tensors float-quantized): ``weight`` float8_e4m3fn [experts, out, in], ``scale``
  float32 [experts, out] (a per-tensor scale repeated per row, as ``WeightOnlyLinear`` holds it);
  block-wise FP8 (transformers' "fp8" with ``weight_block_size`` [rows, columns]): ``scale`` float32
  [experts, ceil(out / rows), ceil(in / columns)] and ``block_size`` (rows, columns);
- int4 (AWQ, GPTQ, compressed-tensors pack-quantized, berth's layout of ``kernels.int4_linear``):
  ``weight`` int32 [experts, out, in / 8], ``scale`` [experts, out, groups], ``zero`` uint8
  [experts, out, groups], and for act-order checkpoints ``input_order`` int32 [experts, in]: expert
  e's weight reads its input ``input_order[e, i]`` at position i (inputs sorted by group).

It lives apart from the kernel so the torch reference can take it without importing Triton.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ExpertWeights:
    weight: torch.Tensor
    scale: torch.Tensor | None = None
    zero: torch.Tensor | None = None
    input_order: torch.Tensor | None = None
    block_size: tuple[int, int] | None = None

    @property
    def is_int4(self) -> bool:
        return self.zero is not None

    @property
    def is_fp8(self) -> bool:
        return self.zero is None and self.scale is not None

    @property
    def num_experts(self) -> int:
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    @property
    def in_features(self) -> int:
        return self.weight.shape[2] * (8 if self.is_int4 else 1)


def as_expert_weights(weights: torch.Tensor | ExpertWeights) -> ExpertWeights:
    """A float stacked tensor as the (unquantized) ``ExpertWeights`` it is."""
    return weights if isinstance(weights, ExpertWeights) else ExpertWeights(weights)
