"""The sparse MLP of mixture-of-experts models (Mixtral, Qwen2-MoE, Qwen3-MoE): a router picks each
token's top-k experts, each expert is a gated SiLU MLP, and the token's output is the experts'
outputs weighted by their router probabilities (renormalized over the k when the model says), plus,
for Qwen2-MoE, a shared expert scaled by a sigmoid gate.

The experts are stored stacked ([experts, 2 * intermediate, hidden] gate/up and [experts, hidden,
intermediate] down), and run grouped through the ops table: the step's (token, expert) pairs are
sorted by expert; on the kernel path (CUDA) one Triton launch per projection over all experts with no
host sync (`kernels.fused_moe`), on the reference path two matmuls per expert, the per-expert counts
read back to the host (`torch_reference.grouped_experts`), which is why only the kernel path can be
captured in a CUDA graph. Pre-quantized checkpoints' experts (FP8, AWQ, GPTQ, compressed-tensors
int4) are dequantized into these stacked tensors at load: the grouped kernel reads float weights only
(the decoder's other linears keep their quantized form, `models.prequantized`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from berth_runtime.models.interface import WeightDestination
from berth_runtime.models.model_config import MixtureOfExperts
from berth_runtime.models.ops import LayerOps

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


class SparseMoE(nn.Module):
    def __init__(self, hidden_size: int, experts: MixtureOfExperts, dtype: torch.dtype) -> None:
        super().__init__()
        self.settings = experts
        size = experts.intermediate_size
        self.router = nn.Parameter(torch.empty(experts.num_experts, hidden_size, dtype=dtype))
        self.experts_gate_up = nn.Parameter(
            torch.empty(experts.num_experts, 2 * size, hidden_size, dtype=dtype)
        )
        self.experts_down = nn.Parameter(torch.empty(experts.num_experts, hidden_size, size, dtype=dtype))
        self.shared_gate_up_proj: nn.Linear | None = None
        self.shared_down_proj: nn.Linear | None = None
        self.shared_expert_gate: nn.Parameter | None = None
        shared = experts.shared_expert_intermediate_size
        if shared:
            self.shared_gate_up_proj = nn.Linear(hidden_size, 2 * shared, bias=False, dtype=dtype)
            self.shared_down_proj = nn.Linear(shared, hidden_size, bias=False, dtype=dtype)
            self.shared_expert_gate = nn.Parameter(torch.empty(1, hidden_size, dtype=dtype))

    def forward(self, hidden: torch.Tensor, ops: LayerOps) -> torch.Tensor:
        """hidden: [tokens, hidden_size] (normed) -> the MLP's output, same shape."""
        top_k = self.settings.experts_per_token
        probabilities = torch.softmax((hidden @ self.router.t()).float(), dim=-1)  # [tokens, experts]
        weights, experts = torch.topk(probabilities, top_k, dim=-1)  # [tokens, top_k]
        if self.settings.normalize_top_k:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        output = ops.grouped_experts(
            hidden, self.experts_gate_up, self.experts_down, weights, experts, ops.silu_and_mul
        )
        if self.shared_gate_up_proj is not None and self.shared_down_proj is not None:
            assert self.shared_expert_gate is not None  # set together
            shared = self.shared_down_proj(ops.silu_and_mul(self.shared_gate_up_proj(hidden)))
            output = output + torch.sigmoid(hidden @ self.shared_expert_gate.t()) * shared
        return output

    def checkpoint_destination(self, module: str) -> WeightDestination | None:
        """Where the checkpoint weight of `module` (the name after "model.layers.N.") goes."""
        if module in ("block_sparse_moe.gate", "mlp.gate"):
            return WeightDestination(self.router)
        if module == "mlp.shared_expert_gate" and self.shared_expert_gate is not None:
            return WeightDestination(self.shared_expert_gate)
        size = self.settings.intermediate_size
        if module in _SHARED_TENSORS and self.shared_gate_up_proj is not None:
            ours, block = _SHARED_TENSORS[module]
            parameter = getattr(self, ours).weight
            shared = self.settings.shared_expert_intermediate_size
            return (
                WeightDestination(parameter)
                if block is None
                else WeightDestination(parameter, block * shared, shared)
            )
        match = _EXPERT.match(module)
        if match is None or int(match.group(1)) >= self.settings.num_experts:
            return None
        ours, block = _EXPERT_TENSORS[match.group(2)]
        parameter = getattr(self, ours)
        expert = int(match.group(1))
        if block is None:
            return WeightDestination(parameter, expert=expert)
        return WeightDestination(parameter, block * size, size, expert=expert)
