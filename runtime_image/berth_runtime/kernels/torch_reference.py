"""The torch reference of every numeric step of the model: the one definition of what each kernel in
this package must compute, and the path the model runs where no kernel can (the CPU build).

One function per op, in plain PyTorch, rounding where Hugging Face's Llama rounds (RMSNorm
normalised in float32 then rounded before the weight; cos/sin rounded to the activation dtype), so
the CPU build's greedy tokens equal `transformers`' (tests/runtime/test_model_parity.py) and the
elementwise kernels equal these functions bit for bit. The kernel tests compare every kernel with its
function here (docs/kernels.md pairs them); `layer_ops` falls back to them for tensors no kernel can
take.

Attention also takes what only some families use: a sliding window (a query sees itself and the
window - 1 keys before it, masked here) and logit soft-capping (Gemma 2); the decode kernel and
`flash_prefill` take both as arguments. The int4 linear and the experts of a mixture of experts have
their references here too (`int4_linear`, `grouped_experts`; experts kept as stored go through
`weight_only_linear` / `int4_linear` per expert, dequantized on every call).

What these do not take: padding rows (a negative slot, a context of length 0), which only the
kernels skip; the CUDA-graph decode step therefore runs on the kernels alone.

KV cache layout per layer: key_cache, value_cache: [num_blocks, block_size, kv_heads, head_dim];
token t's key and value live at flat slot `slot_mapping[t] = block * block_size + offset`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as functional

from berth_runtime.engine.attention_metadata import AttentionMetadata, PrefillBatch
from berth_runtime.kernels.expert_weights import ExpertWeights, as_expert_weights


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """hidden: [tokens, hidden_size] -> same shape; statistics in fp32 as Hugging Face computes them."""
    input_dtype = hidden.dtype
    hidden_fp32 = hidden.to(torch.float32)
    variance = hidden_fp32.pow(2).mean(-1, keepdim=True)
    normed = hidden_fp32 * torch.rsqrt(variance + eps)
    return weight * normed.to(input_dtype)


def add_rms_norm(
    hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (rms_norm(hidden + residual), hidden + residual): the new normed input and residual."""
    summed = hidden + residual
    return rms_norm(summed, weight, eps), summed


def offset_rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma's RMSNorm: the weight is stored as an offset from 1, and the scaling by (1 + weight) is in
    fp32 with one rounding at the end (`rms_norm` rounds before the weight, as Llama does)."""
    hidden_fp32 = hidden.to(torch.float32)
    normed = hidden_fp32 * torch.rsqrt(hidden_fp32.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * (1.0 + weight.to(torch.float32))).to(hidden.dtype)


def offset_add_rms_norm(
    hidden: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`add_rms_norm` with `offset_rms_norm`."""
    summed = hidden + residual
    return offset_rms_norm(summed, weight, eps), summed


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up: [tokens, 2 * intermediate] (gate first, then up) -> [tokens, intermediate]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return functional.silu(gate) * up


def gelu_tanh_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """GeGLU (Gemma): gate_up [tokens, 2 * intermediate] (gate first) -> gelu_tanh(gate) * up."""
    gate, up = gate_up.chunk(2, dim=-1)
    return functional.gelu(gate, approximate="tanh") * up


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [tokens, heads, head_dim]; cos, sin: [tokens, 1, rotary_dim]; the first rotary_dim dims rotate."""
    rotary_dim = cos.shape[-1]
    if rotary_dim < x.shape[-1]:  # partial rotary: the dimensions past rotary_dim pass through
        return torch.cat((_rotate(x[..., :rotary_dim], cos, sin), x[..., rotary_dim:]), dim=-1)
    return x * cos + _rotate_half(x) * sin


def apply_rotary(
    query: torch.Tensor,
    key: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE, out of place: query: [tokens, heads, head_dim], key: [tokens, kv_heads,
    head_dim], positions: [tokens]; tables [max_positions, rotary_dim] float32, both halves equal
    (`berth_runtime.models.rope.cos_sin_table`), cast to the activation dtype as Hugging Face does."""
    cos = cos_table[positions].to(query.dtype).unsqueeze(1)  # [tokens, 1, rotary_dim]
    sin = sin_table[positions].to(query.dtype).unsqueeze(1)
    return _rotate(query, cos, sin), _rotate(key, cos, sin)


def store_kv(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """key, value: [tokens, kv_heads, head_dim] written at their slots (int64, each >= 0)."""
    kv_heads, head_dim = key.shape[1], key.shape[2]
    key_cache.view(-1, kv_heads, head_dim).index_copy_(0, slot_mapping, key)
    value_cache.view(-1, kv_heads, head_dim).index_copy_(0, slot_mapping, value)


def rotary_and_store_kv(
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
    """`apply_rotary`, then `store_kv` of the rotated keys and the values; returns the rotated query."""
    query, key = apply_rotary(query, key, positions, cos_table, sin_table)
    store_kv(key, value, key_cache, value_cache, slot_mapping)
    return query


def paged_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: AttentionMetadata,
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """A step's attention: query [tokens, heads, head_dim] -> same shape, causal over the cache (its
    own keys and values already stored), the prefill rows first, then the decodes; within
    `sliding_window` keys when given, scores soft-capped at `logit_softcap` when given."""
    start = metadata.decode_start

    def decodes(decode_query: torch.Tensor) -> torch.Tensor:
        return decode_attention(
            decode_query,
            key_cache,
            value_cache,
            metadata.decode_block_tables,
            metadata.decode_context_lens,
            scale,
            metadata.decode_max_context_len,
            sliding_window,
            logit_softcap,
        )

    if metadata.prefill_batch is None:  # decodes only: the common step, without an extra copy
        return decodes(query)
    output = torch.empty_like(query)
    output[:start] = prefill_attention(
        query[:start], key_cache, value_cache, metadata.prefill_batch, scale, sliding_window, logit_softcap
    )
    if start < query.shape[0]:
        output[start:] = decodes(query[start:])
    return output


def prefill_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    batch: PrefillBatch,
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """Each multi-token row attended on its own over its context: query [prefill tokens, heads,
    head_dim], the rows packed as `batch` says, each row's tokens the last of its context (a whole
    prompt, or a chunk over a cached prefix). Returns the same shape."""
    kv_heads, head_dim = key_cache.shape[2], key_cache.shape[3]
    # [sum of context lengths, kv_heads, head_dim], row after row
    keys = key_cache.view(-1, kv_heads, head_dim).index_select(0, batch.kv_slots)
    values = value_cache.view(-1, kv_heads, head_dim).index_select(0, batch.kv_slots)
    output = torch.empty_like(query)
    for row in range(len(batch.query_offsets) - 1):
        rows = slice(batch.query_offsets[row], batch.query_offsets[row + 1])
        context = slice(batch.context_offsets[row], batch.context_offsets[row + 1])
        output[rows] = _attend_prefill_row(
            query[rows],
            keys[context].transpose(0, 1),
            values[context].transpose(0, 1),
            scale,
            sliding_window,
            logit_softcap,
        )
    return output


def _attend(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    logit_softcap: float | None,
) -> torch.Tensor:
    """Attention with a boolean `mask` (True = attend), scores soft-capped when `logit_softcap` is set
    (as transformers' eager path: cap, mask, softmax in fp32). query [..., heads, q, head_dim], keys and
    values [..., kv_heads, k, head_dim]."""
    if logit_softcap is None:
        return functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, scale=scale, enable_gqa=True
        )
    groups = query.shape[-3] // keys.shape[-3]
    keys = keys.repeat_interleave(groups, dim=-3)
    values = values.repeat_interleave(groups, dim=-3)
    scores = torch.tanh((query @ keys.transpose(-1, -2)) * scale / logit_softcap) * logit_softcap
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype) @ values


def _attend_prefill_row(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """query: [query_len, heads, head_dim]; keys, values: [kv_heads, context_len, head_dim]."""
    query_len, context_len = query.shape[0], keys.shape[1]
    heads_first = query.transpose(0, 1)  # [heads, query_len, head_dim]
    if sliding_window is not None or logit_softcap is not None:
        query_positions = torch.arange(context_len - query_len, context_len, device=query.device)
        key_positions = torch.arange(context_len, device=query.device)
        offsets = query_positions.unsqueeze(1) - key_positions.unsqueeze(0)  # [query_len, context_len]
        mask = offsets >= 0
        if sliding_window is not None:
            mask &= offsets < sliding_window
        out = _attend(heads_first, keys, values, mask, scale, logit_softcap)
    elif context_len == query_len:
        out = functional.scaled_dot_product_attention(
            heads_first, keys, values, is_causal=True, scale=scale, enable_gqa=True
        )
    else:
        # The chunk's queries sit at positions context_len - query_len .. context_len - 1.
        query_positions = torch.arange(context_len - query_len, context_len, device=query.device)
        key_positions = torch.arange(context_len, device=query.device)
        mask = key_positions.unsqueeze(0) <= query_positions.unsqueeze(1)  # [query_len, context_len]
        out = functional.scaled_dot_product_attention(
            heads_first, keys, values, attn_mask=mask, scale=scale, enable_gqa=True
        )
    return out.transpose(0, 1)


def decode_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    max_context_len: int | None = None,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
) -> torch.Tensor:
    """One query token per sequence over its cached context (its own token included): query
    [decodes, heads, head_dim] -> same shape. block_tables: [decodes, max_blocks] block ids (entries
    past a context are masked out); context_lens: [decodes], each >= 1; max_context_len: their
    maximum as a host int (read from context_lens when None); the last `sliding_window` keys only,
    when given."""
    decodes = query.shape[0]
    max_len = int(context_lens.max()) if max_context_len is None else max_context_len
    # [decodes, max_blocks * block_size, kv_heads, head_dim] -> [decodes, kv_heads, max_len, head_dim];
    # index_select over the flattened table is several times faster than advanced indexing on CPU.
    keys = key_cache.index_select(0, block_tables.flatten()).view(decodes, -1, *key_cache.shape[2:])
    values = value_cache.index_select(0, block_tables.flatten()).view(decodes, -1, *value_cache.shape[2:])
    keys = keys[:, :max_len].transpose(1, 2)
    values = values[:, :max_len].transpose(1, 2)
    positions = torch.arange(max_len, device=query.device)
    mask = positions.unsqueeze(0) < context_lens.unsqueeze(1)  # [decodes, max_len]
    if sliding_window is not None:
        mask &= positions.unsqueeze(0) >= context_lens.unsqueeze(1) - sliding_window
    out = _attend(
        query.view(decodes, -1, 1, query.shape[-1]),  # [decodes, heads, 1, head_dim]
        keys,
        values,
        mask.view(decodes, 1, 1, max_len),
        scale,
        logit_softcap,
    )
    return out.view(decodes, -1, query.shape[-1])


def weight_only_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    block_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """x: [rows, in] times int8 / fp8 qweight [out, in] with a float32 scale per output channel [out], or
    per ``block_size`` block (FP8, dequantized per call), in float32 on any device, rounded to x's dtype."""
    if block_size is None:
        result = (x.to(torch.float32) @ qweight.to(torch.float32).t()) * scale
    else:
        result = x.to(torch.float32) @ dequantize_fp8_blocks(qweight, scale, block_size).t()
    if bias is not None:
        result = result + bias.to(torch.float32)
    return result.to(x.dtype)


def dequantize_int4(qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """berth's int4 layout (``kernels.int4_linear``): qweight int32 [out, in / 8], scale and zero
    [out, groups] -> float32 weight [out, in] = (q - zero) * scale, group by group along the inputs."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=qweight.device)
    nibbles = ((qweight.unsqueeze(-1) >> shifts) & 0xF).reshape(qweight.shape[0], -1)  # [out, in]
    group_size = nibbles.shape[1] // scale.shape[1]
    zeros = zero.to(torch.int32).repeat_interleave(group_size, dim=1)
    return (nibbles - zeros).to(torch.float32) * scale.to(torch.float32).repeat_interleave(group_size, dim=1)


def int4_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """x: [rows, in] (in the weight's input order) times the dequantized int4 weight, in float32 on any
    device, rounded to ``x``'s dtype."""
    result = x.to(torch.float32) @ dequantize_int4(qweight, scale, zero).t()
    if bias is not None:
        result = result + bias.to(torch.float32)
    return result.to(x.dtype)


def dequantize_fp8_blocks(
    weight: torch.Tensor, scale_inv: torch.Tensor, block_size: tuple[int, int]
) -> torch.Tensor:
    """Block-wise FP8: weight float8 [out, in]; scale_inv [ceil(out / rows), ceil(in / columns)] for
    (rows, columns) blocks -> float32 [out, in]."""
    rows, columns = weight.shape
    scales = scale_inv.float().repeat_interleave(block_size[0], 0).repeat_interleave(block_size[1], 1)
    return weight.float() * scales[:rows, :columns]


def _expert_matmul(x: torch.Tensor, experts: ExpertWeights, expert: int) -> torch.Tensor:
    """x [rows, in] times expert ``expert``'s weight, transposed, in ``x``'s dtype; a quantized
    expert is dequantized for this call only, by the linears' own references."""
    if experts.input_order is not None:
        x = x.index_select(1, experts.input_order[expert].long())
    if experts.is_int4:
        assert experts.scale is not None and experts.zero is not None  # int4 holds both
        return int4_linear(x, experts.weight[expert], experts.scale[expert], experts.zero[expert])
    if experts.is_fp8:
        assert experts.scale is not None  # FP8 holds its scales (per row or per block)
        return weight_only_linear(x, experts.weight[expert], experts.scale[expert], None, experts.block_size)
    return x @ experts.weight[expert].t()


def grouped_experts(
    hidden: torch.Tensor,
    gate_up: torch.Tensor | ExpertWeights,
    down: torch.Tensor | ExpertWeights,
    router_weights: torch.Tensor,
    expert_ids: torch.Tensor,
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor] = silu_and_mul,
) -> torch.Tensor:
    """A mixture of experts' MLP: hidden [tokens, hidden]; gate_up [experts, 2 * I, hidden]; down
    [experts, hidden, I] (float tensors, or ``ExpertWeights`` kept as stored); router_weights
    (float32) and expert_ids [tokens, top_k] -> the sum over k of router weight *
    down(silu_and_mul(gate_up(hidden))), accumulated in float32, in hidden's dtype.
    The (token, expert) pairs are grouped by expert, two matmuls per expert over all its tokens (the
    per-expert counts are read back to the host)."""
    gate_up, down = as_expert_weights(gate_up), as_expert_weights(down)
    top_k = expert_ids.shape[1]
    order = torch.argsort(expert_ids.flatten(), stable=True)
    tokens_in_order = order // top_k
    weights_in_order = router_weights.flatten()[order]
    counts = torch.bincount(expert_ids.flatten(), minlength=gate_up.num_experts).tolist()
    output = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        rows = tokens_in_order[start : start + count]
        activated = silu_and_mul(_expert_matmul(hidden[rows], gate_up, expert))
        expert_output = _expert_matmul(activated, down, expert).float()
        output.index_add_(0, rows, expert_output * weights_in_order[start : start + count, None])
        start += count
    return output.to(hidden.dtype)
