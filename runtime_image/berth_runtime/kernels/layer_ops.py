"""The model's numeric steps on the Triton kernels, with exactly the signatures of
``berth_runtime.layers`` — so wiring the kernels into ``models/llama.py`` is an import swap.

Each function runs its kernel when the tensors can take it (a CUDA device, or the CPU under
``TRITON_INTERPRET=1``) and falls back to the torch reference layer otherwise (the CPU build).
Attention covers both halves of a step: the prefill rows go through one packed varlen attention
over the paged cache (``prefill_attention``), the decode rows through one ``paged_attention_decode``
launch written straight into the output; the functional ``add_rms_norm`` writes the new residual to
a fresh tensor, so callers that keep the old one are safe.
"""

from __future__ import annotations

import torch

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.kernels import (
    activation,
    kv_cache_store,
    paged_attention,
    rms_norm,
    rotary,
    rotary_kv_store,
)
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.prefill_attention import paged_prefill_attention
from berth_runtime.layers import activation as reference_activation
from berth_runtime.layers import attention as reference_attention
from berth_runtime.layers import norm as reference_norm
from berth_runtime.layers import rotary as reference_rotary


def _on_kernel_device(tensor: torch.Tensor, kernel: object) -> bool:
    return tensor.device.type == "cuda" or (tensor.device.type == "cpu" and runs_interpreted(kernel))


def rms_norm_op(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As ``layers.norm.rms_norm``."""
    if not _on_kernel_device(hidden, rms_norm._rms_norm_kernel):
        return reference_norm.rms_norm(hidden, weight, eps)
    return rms_norm.rms_norm(hidden, weight, eps)


def add_rms_norm_op(
    hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``layers.norm.add_rms_norm``: (rms_norm(hidden + residual), hidden + residual)."""
    if not _on_kernel_device(hidden, rms_norm._rms_norm_kernel):
        return reference_norm.add_rms_norm(hidden, residual, weight, eps)
    summed = torch.empty_like(residual)
    return rms_norm.add_rms_norm(hidden, residual, weight, eps, residual_out=summed), summed


def silu_and_mul_op(gate_up: torch.Tensor) -> torch.Tensor:
    """As ``layers.activation.silu_and_mul``."""
    if not _on_kernel_device(gate_up, activation._silu_and_mul_kernel):
        return reference_activation.silu_and_mul(gate_up)
    return activation.silu_and_mul(gate_up)


def apply_rotary_op(
    query: torch.Tensor,
    key: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``layers.rotary.apply_rotary``, but rotating ``query`` and ``key`` in place on the kernel path."""
    if not _on_kernel_device(query, rotary._rotary_kernel):
        return reference_rotary.apply_rotary(query, key, positions, cos_table, sin_table)
    return rotary.apply_rotary_embedding(query, key, positions, cos_table, sin_table)


def store_kv_op(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """As ``layers.attention.store_kv``; a negative slot (a CUDA-graph padding row) writes nothing."""
    if not _on_kernel_device(key, kv_cache_store._store_kv_kernel):
        reference_attention.store_kv(key, value, key_cache, value_cache, slot_mapping)
        return
    kv_cache_store.store_kv_cache(key, value, key_cache, value_cache, slot_mapping)


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
    """``apply_rotary`` then ``store_kv`` in one launch; returns the rotated query (``key`` itself is
    left unrotated on the kernel path: the rotated keys go to the cache, which attention reads)."""
    if not _on_kernel_device(query, rotary_kv_store._rotary_store_kv_kernel):
        query, key = reference_rotary.apply_rotary(query, key, positions, cos_table, sin_table)
        reference_attention.store_kv(key, value, key_cache, value_cache, slot_mapping)
        return query
    return rotary_kv_store.rotary_and_store_kv(
        query, key, value, positions, cos_table, sin_table, key_cache, value_cache, slot_mapping
    )


def paged_attention_op(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """As ``layers.attention.paged_attention``: query [tokens, heads, head_dim] -> same shape."""
    if not _on_kernel_device(query, paged_attention._paged_decode_kernel):
        return reference_attention.paged_attention(query, key_cache, value_cache, metadata, scale)
    output = torch.empty_like(query)
    if metadata.prefill_batch is not None:
        output[: metadata.decode_start] = paged_prefill_attention(
            query[: metadata.decode_start], key_cache, value_cache, metadata.prefill_batch, scale
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
        )
    return output


KERNEL_OPS_BY_LAYER_NAME = {
    "rms_norm": rms_norm_op,
    "add_rms_norm": add_rms_norm_op,
    "silu_and_mul": silu_and_mul_op,
    "apply_rotary": apply_rotary_op,
    "store_kv": store_kv_op,
    "paged_attention": paged_attention_op,
}
"""The ``berth_runtime.layers`` function names ``models/llama.py`` calls -> their kernel-backed ops."""
