"""``Int4Linear``: an AWQ or GPTQ checkpoint's 4-bit linear layer, held as stored (packed nibbles, one
scale and one zero point per group of inputs) instead of dequantized at load.

On CUDA the forward pass is the Triton dequant-GEMM/GEMV (``kernels.int4_linear``). Elsewhere it is
the reference: the weight is dequantized on every call (``torch_reference.int4_linear``), not cached.
The CPU build serves small models and tests; a cached float copy would hold 8x the int4 bytes for the
model's lifetime, which is what loading as stored is meant to avoid, and the per-call dequantization
is an elementwise pass no larger than the matmul it feeds.

GPTQ act-order checkpoints assign inputs to groups out of order (``g_idx``); the loader permutes each
weight's inputs so groups are contiguous (as vLLM does) and stores the permutation, one row per
checkpoint tensor fused into this layer (q/k/v share their input and, in GPTQ, their order: one
gather then serves the whole fused matmul; rows that disagree are run shard by shard).
"""

from __future__ import annotations

import torch
from torch import nn

from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.int4_linear import int4_linear


class Int4Linear(nn.Module):
    qweight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bias: torch.Tensor | None
    input_permutation: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        group_size: int,
        bias: torch.Tensor | None,
        shard_sizes: list[int] | None,
        device: torch.device,
        scale_dtype: torch.dtype = torch.float16,
    ) -> None:
        """Empty buffers the loader fills. ``shard_sizes``: the output rows of each checkpoint tensor
        fused here when inputs may be permuted (act-order), None when they never are (AWQ)."""
        super().__init__()
        if in_features % 8 or in_features % group_size:
            raise ValueError(
                f"int4 layer with {in_features} inputs: needs a multiple of 8 and of the group size "
                f"{group_size}"
            )
        self.in_features, self.out_features = in_features, out_features
        groups = in_features // group_size
        self.register_buffer(
            "qweight", torch.empty(out_features, in_features // 8, dtype=torch.int32, device=device)
        )
        self.register_buffer("scale", torch.empty(out_features, groups, dtype=scale_dtype, device=device))
        self.register_buffer("zero", torch.empty(out_features, groups, dtype=torch.uint8, device=device))
        self.register_buffer("bias", bias)
        self.shard_sizes = shard_sizes
        permutation = None
        if shard_sizes is not None:
            permutation = torch.empty(len(shard_sizes), in_features, dtype=torch.int32, device=device)
        self.register_buffer("input_permutation", permutation)
        self._gathers: tuple[torch.device, list[torch.Tensor | None]] | None = None
        """(device, per distinct shard order the input gather or None for the identity), read once
        after loading and again after a move to another device."""

    def _shard_gathers(self) -> list[torch.Tensor | None]:
        """[one gather for all rows] when every shard shares its input order, else one per shard.
        Reads the loaded permutation back once (a host sync on the first, eager, forward pass)."""
        device = self.qweight.device
        if self._gathers is None or self._gathers[0] != device:
            permutation = self.input_permutation
            if permutation is None:
                self._gathers = (device, [None])
            else:
                identity = torch.arange(self.in_features, device=device, dtype=permutation.dtype)
                rows = [None if torch.equal(row, identity) else row.long() for row in permutation]
                same = all(torch.equal(row, permutation[0]) for row in permutation)
                self._gathers = (device, rows[:1] if same else rows)
        return self._gathers[1]

    def _matmul(self, x: torch.Tensor, rows: slice, gather: torch.Tensor | None) -> torch.Tensor:
        if gather is not None:
            x = x.index_select(1, gather)
        bias = None if self.bias is None else self.bias[rows]
        weight = (self.qweight[rows], self.scale[rows], self.zero[rows])
        if x.device.type == "cuda":
            return int4_linear(x, *weight, bias)
        return torch_reference.int4_linear(x, *weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        gathers = self._shard_gathers()
        if len(gathers) == 1:
            out = self._matmul(rows, slice(None), gathers[0])
        else:
            assert self.shard_sizes is not None  # several gathers come from several shards
            starts = [sum(self.shard_sizes[:index]) for index in range(len(self.shard_sizes))]
            out = torch.cat(
                [
                    self._matmul(rows, slice(start, start + size), gather)
                    for start, size, gather in zip(starts, self.shard_sizes, gathers, strict=True)
                ],
                dim=-1,
            )
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, int4 groups of "
            f"{self.in_features // self.scale.shape[1]}, act-order={self.input_permutation is not None}, "
            f"bias={self.bias is not None}"
        )
