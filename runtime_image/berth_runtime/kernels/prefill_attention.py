"""Prefill (and chunked-prefill) attention over the paged KV cache: all of a step's multi-token
rows in one call.

Why no Triton kernel: prefill is compute-bound, and on Hopper PyTorch's flash attention is already
near the tensor-core limit; a hand-written kernel would at best match it. Attention is also a small
share of prefill FLOPs (for the 8B shape at 2,048 tokens about 3% of the GEMMs' 2·params·tokens), so
TTFT is decided by the linear layers. What matters is the call count: a step that admits many prompts
must not pay one attention call per row per layer (64 prompts x 32 layers of Python-launched SDPA
took an H200 longer than the prompts' GEMMs). So the rows' contexts are gathered by slot into one
packed K/V (one read of the contexts, small next to the weights) and, on CUDA in bf16/fp16, attended
by one variable-length flash call whose causal mask is aligned to each row's end, which is right
both for a whole prompt and for a chunk whose earlier tokens are already cached (prefix caching,
chunked prefill). Elsewhere (CPU, fp32) each row goes through SDPA with ``causal_lower_right``.

Gemma's sliding windows are flash's ``window_size`` (its left edge per query); the soft-capped scores
of Gemma 2 are not something flash or SDPA offer, so a capped layer's prefill (and a windowed one off
the flash path) runs berth's own Triton flash forward (``flash_prefill``) over the same packed K/V,
or the torch reference's masked attention where no kernel can run.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right
from torch.nn.attention.varlen import varlen_attn

from berth_runtime.engine.attention_metadata import PrefillBatch
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    check_dtype,
    check_same_dtype,
    check_shape,
    runs_interpreted,
)
from berth_runtime.kernels.flash_prefill import _flash_prefill_kernel, flash_prefill_attention

_VARLEN_DTYPES = (torch.bfloat16, torch.float16)
# torch >= 2.12 asks for GQA explicitly; earlier flash varlen takes fewer KV heads as they are
_VARLEN_GQA = {"enable_gqa": True} if "enable_gqa" in inspect.signature(varlen_attn).parameters else {}


def paged_prefill_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    batch: PrefillBatch,
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """Causal attention of every prefill row over its context in the cache; each query sees the last
    ``sliding_window`` keys up to itself when given, scores soft-capped at ``logit_softcap`` when given.

    ``query``: [prefill tokens, num_heads, head_dim], the rows' tokens packed as ``batch`` says; each
    row's tokens sit at the end of its context, and their K/V are already stored; caches:
    [num_blocks, block_size, num_kv_heads, head_dim]. Returns [prefill tokens, num_heads, head_dim].
    """
    op = "paged_prefill_attention"
    check_dtype(op, "query", query, FLOAT_ACTIVATION_DTYPES)
    check_same_dtype(op, {"query": query, "key_cache": key_cache, "value_cache": value_cache})
    if query.dim() != 3 or key_cache.dim() != 4:
        raise ValueError(
            f"{op}: query must be [tokens, num_heads, head_dim] and key_cache [num_blocks, block_size, "
            f"num_kv_heads, head_dim]; got {list(query.shape)} and {list(key_cache.shape)}"
        )
    tokens, num_heads, head_dim = query.shape
    num_kv_heads = key_cache.shape[2]
    check_shape(op, "key_cache", key_cache, [None, None, None, head_dim])
    check_shape(op, "value_cache", value_cache, list(key_cache.shape))
    if num_heads % num_kv_heads:
        raise ValueError(f"{op}: query heads {num_heads} must be a multiple of KV heads {num_kv_heads}")
    if tokens != batch.query_offsets[-1]:
        raise ValueError(f"{op}: query has {tokens} tokens; the batch's rows hold {batch.query_offsets[-1]}")
    flash = query.is_cuda and query.dtype in _VARLEN_DTYPES and head_dim % 8 == 0 and head_dim <= 256
    capped = logit_softcap is not None or (sliding_window is not None and not flash)
    if capped and not (query.is_cuda or runs_interpreted(_flash_prefill_kernel)):
        return torch_reference.prefill_attention(
            query, key_cache, value_cache, batch, scale, sliding_window, logit_softcap
        )
    keys = key_cache.view(-1, num_kv_heads, head_dim).index_select(0, batch.kv_slots)
    values = value_cache.view(-1, num_kv_heads, head_dim).index_select(0, batch.kv_slots)
    if capped:
        return flash_prefill_attention(
            query.contiguous(),
            keys,
            values,
            batch.cu_seq_q,
            batch.cu_seq_k,
            batch.max_query_len,
            scale,
            sliding_window,
            logit_softcap,
        )
    if flash:
        return varlen_attn(
            query.contiguous(),
            keys,
            values,
            batch.cu_seq_q,
            batch.cu_seq_k,
            batch.max_query_len,
            batch.max_context_len,
            scale=scale,
            # causal, aligned to each row's last token; a window keeps itself and window - 1 before it
            window_size=(-1 if sliding_window is None else sliding_window - 1, 0),
            **_VARLEN_GQA,
        )
    output = torch.empty_like(query)
    for row in range(len(batch.query_offsets) - 1):
        rows = slice(batch.query_offsets[row], batch.query_offsets[row + 1])
        context = slice(batch.context_offsets[row], batch.context_offsets[row + 1])
        output[rows] = _attend_row(query[rows], keys[context], values[context], scale)
    return output


def _attend_row(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
    """One row through SDPA, 4-D with a batch of one: fused backends take only 4-D inputs, and 3-D
    ones fall back to the math backend, which materialises every head's score matrix."""
    attended = F.scaled_dot_product_attention(
        query.transpose(0, 1)[None],  # [1, heads, query_len, head_dim]
        keys.transpose(0, 1)[None],  # [1, kv_heads, context_len, head_dim]
        values.transpose(0, 1)[None],
        attn_mask=causal_lower_right(query.shape[0], keys.shape[0]),
        scale=scale,
        enable_gqa=query.shape[1] != keys.shape[1],
    )
    return attended[0].transpose(0, 1)
