"""The table of numeric steps a decoder layer calls, and its two instances: the torch reference
(`berth_runtime.kernels.torch_reference`, any device: the CPU build) and the Triton kernels
(`berth_runtime.kernels.layer_ops`, CUDA; each falls back to its reference on tensors no kernel can
take). Every family runs its layers through one of these tables, so a kernel added here serves all
of them; a model picks the table from `use_kernel_ops` at each forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.kernels import layer_ops, torch_reference


@dataclass(frozen=True)
class LayerOps:
    """The model's numeric steps, one callable each, with the torch reference's signatures."""

    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    add_rms_norm: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]
    ]
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor]
    rotary_and_store_kv: Callable[..., torch.Tensor]
    """(query, key, value, positions, cos, sin, key_cache, value_cache, slot_mapping) -> rotated
    query; the rotated keys and the values are in the cache afterwards."""
    paged_attention: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, AttentionMetadata, float, int | None, float | None],
        torch.Tensor,
    ]
    """(query, key_cache, value_cache, metadata, scale, sliding_window, logit_softcap) -> attended."""
    grouped_experts: Callable[..., torch.Tensor]
    """(hidden, gate_up, down, router_weights, expert_ids, silu_and_mul) -> a mixture of experts'
    output (`torch_reference.grouped_experts`)."""


REFERENCE_OPS = LayerOps(
    rms_norm=torch_reference.rms_norm,
    add_rms_norm=torch_reference.add_rms_norm,
    silu_and_mul=torch_reference.silu_and_mul,
    rotary_and_store_kv=torch_reference.rotary_and_store_kv,
    paged_attention=torch_reference.paged_attention,
    grouped_experts=torch_reference.grouped_experts,
)
"""The torch reference, on any device (the CPU build's path)."""

KERNEL_OPS = LayerOps(
    rms_norm=layer_ops.rms_norm_op,
    add_rms_norm=layer_ops.add_rms_norm_op,
    silu_and_mul=layer_ops.silu_and_mul_op,
    rotary_and_store_kv=layer_ops.rotary_and_store_kv_op,
    paged_attention=layer_ops.paged_attention_op,
    grouped_experts=layer_ops.grouped_experts_op,
)
"""The Triton kernels (each falls back to its reference on tensors no kernel can take)."""
