"""The sparse MLP of mixture-of-experts models (Mixtral, Qwen2-MoE, Qwen3-MoE): a router picks each
token's top-k experts, each expert is a gated SiLU MLP, and the token's output is the experts'
outputs weighted by their router probabilities (renormalized over the k when the model says), plus,
for Qwen2-MoE, a shared expert scaled by a sigmoid gate.

The experts are stored stacked ([experts, 2 * intermediate, hidden] gate/up and [experts, hidden,
intermediate] down), and run grouped through the ops table: the step's (token, expert) pairs are
sorted by expert; on the kernel path (CUDA) one Triton launch per projection over all experts with no
host sync (`kernels.fused_moe`), on the reference path two matmuls per expert, the per-expert counts
read back to the host (`torch_reference.grouped_experts`), which is why only the kernel path can be
captured in a CUDA graph. Pre-quantized checkpoints' experts (FP8 per tensor or channel, AWQ, GPTQ,
compressed-tensors int4, block-wise FP8; with block-wise FP8 the shared expert too, as a
`WeightOnlyLinear` like the dense MLPs) are kept as stored: before loading, `store_experts_as_fp8` /
`store_experts_as_int4` swap the stacked tensors for `quantization.QuantizedExperts` buffers that the
loader fills expert by expert, and the grouped op dequantizes them as it runs. What they cannot take
(FP8 on a GPU without e4m3, int4 groups or FP8 blocks the kernel's tiles do not fit) is
dequantized into the float stacked tensors at load, as before.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from berth_runtime.models.interface import WeightDestination
from berth_runtime.models.model_config import MixtureOfExperts
from berth_runtime.models.ops import LayerOps
from berth_runtime.quantization.experts import QuantizedExperts
from berth_runtime.quantization.linear import WeightOnlyLinear

# Checkpoint module (after "model.layers.N.") -> (our parameter, its row block: 0 gate, 1 up, None all).
_EXPERT = re.compile(r"^(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(w1|w2|w3|gate_proj|up_proj|down_proj)$")
_EXPERT_TENSORS: dict[str, tuple[str, int | None]] = {
    "w1": ("experts_gate_up", 0),
    "gate_proj": ("experts_gate_up", 0),
    "w3": ("experts_gate_up", 1),
    "up_proj": ("experts_gate_up", 1),
    "w2": ("experts_down", None),
    "down_proj": ("experts_down", None),
}
_SHARED_TENSORS: dict[str, tuple[str, int | None]] = {
    "mlp.shared_expert.gate_proj": ("shared_gate_up_proj", 0),
    "mlp.shared_expert.up_proj": ("shared_gate_up_proj", 1),
    "mlp.shared_expert.down_proj": ("shared_down_proj", None),
}


# A stored expert's tensor (its kind, after the module name) -> the `QuantizedExperts` buffer.
_STORED_PARTS = {"weight": "weight", "weight_scale": "scale", "weight_zero": "zero"}


class SparseMoE(nn.Module):
    experts_gate_up: nn.Parameter | QuantizedExperts
    experts_down: nn.Parameter | QuantizedExperts

    def __init__(self, hidden_size: int, experts: MixtureOfExperts, dtype: torch.dtype) -> None:
        super().__init__()
        self.settings = experts
        size = experts.intermediate_size
        self.router = nn.Parameter(torch.empty(experts.num_experts, hidden_size, dtype=dtype))
        self.experts_gate_up = nn.Parameter(
            torch.empty(experts.num_experts, 2 * size, hidden_size, dtype=dtype)
        )
        self.experts_down = nn.Parameter(torch.empty(experts.num_experts, hidden_size, size, dtype=dtype))
        # nn.Linear, or WeightOnlyLinear where block-wise FP8 keeps the shared expert as stored
        self.shared_gate_up_proj: nn.Module | None = None
        self.shared_down_proj: nn.Module | None = None
        self.shared_expert_gate: nn.Parameter | None = None
        shared = experts.shared_expert_intermediate_size
        if shared:
            self.shared_gate_up_proj = nn.Linear(hidden_size, 2 * shared, bias=False, dtype=dtype)
            self.shared_down_proj = nn.Linear(shared, hidden_size, bias=False, dtype=dtype)
            self.shared_expert_gate = nn.Parameter(torch.empty(1, hidden_size, dtype=dtype))

    def store_experts_as_fp8(self, block_size: tuple[int, int] | None = None) -> None:
        """Holds the experts as FP8 weights with a scale per row, or per `block_size` (rows, columns)
        block, for the loader to fill as stored; where blocks do not fit (gate and up each whole row
        blocks, blocks of a multiple of 16 columns) they stay float."""
        num_experts, size = self.settings.num_experts, self.settings.intermediate_size
        hidden_size, device = self.router.shape[1], self.router.device
        if block_size is not None and (size % block_size[0] or block_size[1] % 16):
            return
        self._hold_as_stored(
            QuantizedExperts(num_experts, 2 * size, hidden_size, device, block_size=block_size),
            QuantizedExperts(num_experts, hidden_size, size, device, block_size=block_size),
        )

    def store_experts_as_int4(self, group_size: int, act_order: bool, scale_dtype: torch.dtype) -> None:
        """Holds the experts in the int4 layout (`group_size` 0: one group per row) for the loader to
        fill as stored (the caller checks the kernel takes both projections' inputs)."""
        num_experts, size = self.settings.num_experts, self.settings.intermediate_size
        hidden_size, device = self.router.shape[1], self.router.device
        groups = {inputs: group_size or inputs for inputs in (hidden_size, size)}
        self._hold_as_stored(
            QuantizedExperts(
                num_experts, 2 * size, hidden_size, device, groups[hidden_size], 2 * act_order, scale_dtype
            ),
            QuantizedExperts(
                num_experts, hidden_size, size, device, groups[size], int(act_order), scale_dtype
            ),
        )

    def _hold_as_stored(self, gate_up: QuantizedExperts, down: QuantizedExperts) -> None:
        """Replaces the float stacked parameters (a module cannot be assigned over a parameter)."""
        del self.experts_gate_up, self.experts_down
        self.experts_gate_up, self.experts_down = gate_up, down

    def forward(self, hidden: torch.Tensor, ops: LayerOps) -> torch.Tensor:
        """hidden: [tokens, hidden_size] (normed) -> the MLP's output, same shape."""
        top_k = self.settings.experts_per_token
        probabilities = torch.softmax((hidden @ self.router.t()).float(), dim=-1)  # [tokens, experts]
        weights, experts = torch.topk(probabilities, top_k, dim=-1)  # [tokens, top_k]
        if self.settings.normalize_top_k:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        gate_up, down = (
            stacked.expert_weights() if isinstance(stacked, QuantizedExperts) else stacked
            for stacked in (self.experts_gate_up, self.experts_down)
        )
        output = ops.grouped_experts(hidden, gate_up, down, weights, experts, ops.silu_and_mul)
        if self.shared_gate_up_proj is not None and self.shared_down_proj is not None:
            assert self.shared_expert_gate is not None  # set together
            shared = self.shared_down_proj(ops.silu_and_mul(self.shared_gate_up_proj(hidden)))
            output = output + torch.sigmoid(hidden @ self.shared_expert_gate.t()) * shared
        return output

    def checkpoint_destination(self, module: str, kind: str = "weight") -> WeightDestination | None:
        """Where the checkpoint tensor `kind` ("weight", or a stored expert's "weight_scale",
        "weight_zero", "input_permutation") of `module` (the name after "model.layers.N.") goes."""
        if module in _SHARED_TENSORS and self.shared_gate_up_proj is not None:
            return self._shared_destination(module, kind)
        if kind != "weight":
            return self._stored_destination(module, kind)
        if module in ("block_sparse_moe.gate", "mlp.gate"):
            return WeightDestination(self.router)
        if module == "mlp.shared_expert_gate" and self.shared_expert_gate is not None:
            return WeightDestination(self.shared_expert_gate)
        size = self.settings.intermediate_size
        match = _EXPERT.match(module)
        if match is None or int(match.group(1)) >= self.settings.num_experts:
            return None
        ours, block = _EXPERT_TENSORS[match.group(2)]
        stacked = getattr(self, ours)
        parameter = stacked.weight if isinstance(stacked, QuantizedExperts) else stacked
        expert = int(match.group(1))
        if block is None:
            return WeightDestination(parameter, expert=expert)
        return WeightDestination(parameter, block * size, size, expert=expert)

    def _shared_destination(self, module: str, kind: str) -> WeightDestination | None:
        """The shared expert's weight (gate and up: their rows of the fused linear), or its block
        scales where block-wise FP8 holds it as stored (a `WeightOnlyLinear`, as the dense MLPs)."""
        ours, block = _SHARED_TENSORS[module]
        linear = getattr(self, ours)
        stored = isinstance(linear, WeightOnlyLinear)
        if kind == "weight":
            parameter = linear.qweight if stored else linear.weight
        elif kind == "weight_scale" and stored:
            parameter = linear.scale
        else:
            return None
        if block is None:
            return WeightDestination(parameter)
        rows = self.settings.shared_expert_intermediate_size
        rows = linear.scale_rows(rows) if kind == "weight_scale" else rows
        return WeightDestination(parameter, block * rows, rows)

    def _stored_destination(self, module: str, kind: str) -> WeightDestination | None:
        """A stored expert's scale, zero point or input order: the rows of its expert (an order: the
        row of its checkpoint tensor, gate 0 and up 1)."""
        match = _EXPERT.match(module)
        if match is None or int(match.group(1)) >= self.settings.num_experts:
            return None
        ours, block = _EXPERT_TENSORS[match.group(2)]
        stacked = getattr(self, ours)
        if not isinstance(stacked, QuantizedExperts):
            return None
        expert = int(match.group(1))
        if kind == "input_permutation":
            order = stacked.input_permutation
            return None if order is None else WeightDestination(order, block or 0, 1, expert=expert)
        buffer = getattr(stacked, _STORED_PARTS[kind]) if kind in _STORED_PARTS else None
        if buffer is None:
            return None
        if block is None:
            return WeightDestination(buffer, expert=expert)
        rows = self.settings.intermediate_size  # gate's or up's rows (scale rows: per block with FP8 blocks)
        rows = stacked.scale_rows(rows) if kind == "weight_scale" else rows
        return WeightDestination(buffer, block * rows, rows, expert=expert)
