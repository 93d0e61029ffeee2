"""The model's numeric steps on the Triton kernels, with exactly the signatures of the torch
reference (``berth_runtime.kernels.torch_reference``), so ``models/llama.py`` switches between the
two by table (``KERNEL_OPS`` / ``REFERENCE_OPS``).

Each function runs its kernel when the tensors can take it (a CUDA device, or the CPU under
``TRITON_INTERPRET=1``) and falls back to the torch reference otherwise (the CPU build).
Attention covers both halves of a step: the prefill rows go through one packed varlen attention
over the paged cache (``prefill_attention``), the decode rows through one ``paged_attention_decode``
launch written straight into the output; the functional ``add_rms_norm`` writes the new residual to
a fresh tensor, so callers that keep the old one are safe.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.kernels import (
    activation,
    fused_moe,
    paged_attention,
    rms_norm,
    rotary_kv_store,
    torch_reference,
)
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.expert_weights import ExpertWeights
from berth_runtime.kernels.prefill_attention import paged_prefill_attention


def _on_kernel_device(tensor: torch.Tensor, kernel: object) -> bool:
    return tensor.device.type == "cuda" or (tensor.device.type == "cpu" and runs_interpreted(kernel))


def rms_norm_op(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As ``torch_reference.rms_norm``."""
    if not _on_kernel_device(hidden, rms_norm._rms_norm_kernel):
        return torch_reference.rms_norm(hidden, weight, eps)
    return rms_norm.rms_norm(hidden, weight, eps)


def add_rms_norm_op(
    hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``torch_reference.add_rms_norm``: (rms_norm(hidden + residual), hidden + residual)."""
    if not _on_kernel_device(hidden, rms_norm._rms_norm_kernel):
        return torch_reference.add_rms_norm(hidden, residual, weight, eps)
    summed = torch.empty_like(residual)
    return rms_norm.add_rms_norm(hidden, residual, weight, eps, residual_out=summed), summed


def silu_and_mul_op(gate_up: torch.Tensor) -> torch.Tensor:
    """As ``torch_reference.silu_and_mul``."""
    if not _on_kernel_device(gate_up, activation._silu_and_mul_kernel):
        return torch_reference.silu_and_mul(gate_up)
    return activation.silu_and_mul(gate_up)


def rotary_and_store_kv_op(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> torch.Tensor:
    """As ``torch_reference.rotary_and_store_kv``, in one launch: returns the rotated query (the kernel
    rotates ``query`` in place; ``key`` is left unrotated either way: the rotated keys go to the cache,
    which attention reads); a negative slot (a CUDA-graph padding row) writes nothing."""
    if not _on_kernel_device(query, rotary_kv_store._rotary_store_kv_kernel):
        return torch_reference.rotary_and_store_kv(
            query, key, value, positions, cos_table, sin_table, key_cache, value_cache, slot_mapping
        )
    return rotary_kv_store.rotary_and_store_kv(
        query, key, value, positions, cos_table, sin_table, key_cache, value_cache, slot_mapping
    )


def paged_attention_op(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: AttentionMetadata,
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """As ``torch_reference.paged_attention``: query [tokens, heads, head_dim] -> same shape; a decode
    row with context length 0 (a CUDA-graph padding row) gives zeros."""
    if not _on_kernel_device(query, paged_attention._paged_decode_kernel):
        return torch_reference.paged_attention(
            query, key_cache, value_cache, metadata, scale, sliding_window, logit_softcap
        )
    output = torch.empty_like(query)
    if metadata.prefill_batch is not None:
        output[: metadata.decode_start] = paged_prefill_attention(
            query[: metadata.decode_start],
            key_cache,
            value_cache,
            metadata.prefill_batch,
            scale,
            sliding_window,
            logit_softcap,
        )
    if metadata.decode_start < query.shape[0]:
        paged_attention.paged_attention_decode(
            query[metadata.decode_start :],
            key_cache,
            value_cache,
            metadata.decode_block_tables,
            metadata.decode_context_lens,
            scale,
            max_context_len=metadata.decode_max_context_len,
            out=output[metadata.decode_start :],
            sliding_window=sliding_window,
            logit_softcap=logit_softcap,
        )
    return output


def grouped_experts_op(
    hidden: torch.Tensor,
    gate_up: torch.Tensor | ExpertWeights,
    down: torch.Tensor | ExpertWeights,
    router_weights: torch.Tensor,
    expert_ids: torch.Tensor,
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """As ``torch_reference.grouped_experts``, as two grouped launches over all experts (float, or
    kept as stored in FP8 / int4)."""
    if not _on_kernel_device(hidden, fused_moe._grouped_matmul_kernel):
        return torch_reference.grouped_experts(
            hidden, gate_up, down, router_weights, expert_ids, silu_and_mul
        )
    return fused_moe.fused_experts(
        hidden.contiguous(), gate_up, down, router_weights, expert_ids, silu_and_mul
    )
