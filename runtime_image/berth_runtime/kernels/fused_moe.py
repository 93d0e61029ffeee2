"""The experts of a mixture-of-experts MLP as two grouped matmuls over all experts at once.

A step's (token, expert) pairs are sorted by expert and each expert's run padded to a multiple of
``BLOCK_M`` (:func:`align_pairs_by_expert`, torch ops on the device with no host sync, so a step can
be captured in a CUDA graph: the padded length is bounded by ``pairs + experts * (BLOCK_M - 1)``,
known on the host). One launch then computes every pair's gate/up row, each program one
``BLOCK_M`` block of one expert times a ``BLOCK_N`` slice of that expert's weight; SiLU-and-multiply
runs on the result; a second launch computes the down projection and scales each row by its
router weight; the ``top_k`` rows of a token are summed. Each active expert's weights are read once
per block of its tokens (once per step at decode), never for an expert no token chose, and no loop
over experts runs on the host (the torch reference, ``torch_reference.grouped_experts``, reads the
per-expert counts back to the host and launches two matmuls per expert).

Experts a pre-quantized checkpoint stores in FP8 or int4 (``ExpertWeights``) are read as stored and
dequantized in the inner loop, so decode reads a half (FP8) or about a quarter (int4) of bf16's
bytes: FP8 tiles are cast and the accumulated row scaled once by the row's scale; int4 tiles are
unpacked and centred (``q - zero``, exact in the dot dtype) with each K tile inside one group, the
partial dot scaled by the group's scale, as ``kernels.int4_linear`` does; block-wise FP8 (one scale
per block of rows x columns) likewise, each K tile inside one block; act-order experts gather each K
tile's activations through the expert's input order. The launch structure is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    check_contiguous,
    check_dtype,
    check_launchable,
    check_shape,
    dot_input_precision,
    dot_operand_dtype,
)
from berth_runtime.kernels._rounding import round_to
from berth_runtime.kernels.expert_weights import ExpertWeights, as_expert_weights


@triton.jit
def _grouped_matmul_kernel(
    input_ptr,
    weight_ptr,
    scale_ptr,
    zero_ptr,
    order_ptr,
    output_ptr,
    pair_ids_ptr,
    block_experts_ptr,
    router_weights_ptr,
    num_pairs,
    num_experts,
    out_features,
    in_features,
    scale_rows,
    rows_per_scale,
    groups,
    group_size,
    top_k,
    input_row_stride,
    output_row_stride,
    INPUT_PER_TOKEN: tl.constexpr,
    SCALE_BY_ROUTER: tl.constexpr,
    INT4: tl.constexpr,
    SCALE_PER_TILE: tl.constexpr,
    SCALE_PER_ROW: tl.constexpr,
    HAS_ORDER: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    row_block = tl.program_id(1)
    expert = tl.load(block_experts_ptr + row_block).to(tl.int64)
    if expert < num_experts:  # blocks past the padded total hold no pairs
        pairs = tl.load(pair_ids_ptr + row_block * BLOCK_M + tl.arange(0, BLOCK_M))
        pair_mask = pairs < num_pairs
        # gate/up reads each pair's token row; down reads the pair's own activated row
        input_rows = pairs // top_k if INPUT_PER_TOKEN else pairs
        col_ids = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_mask = col_ids < out_features
        k_ids = tl.arange(0, BLOCK_K)
        input_row_ptrs = input_ptr + input_rows[:, None].to(tl.int64) * input_row_stride
        weight_rows = expert * out_features + col_ids[None, :].to(tl.int64)
        # a [BLOCK_K, BLOCK_N] tile of this expert's transposed weight [out, in] (int4: [out, in / 8])
        # int4 groups and FP8 blocks: the scale row of each output (rows_per_scale outputs share one)
        group_row = (expert * scale_rows + (col_ids // rows_per_scale).to(tl.int64)) * groups
        if INT4:
            weight_tile = weight_ptr + weight_rows * (in_features // 8) + (k_ids // 8)[:, None]
            shifts = ((k_ids % 8) * 4)[:, None]
        else:
            weight_tile = weight_ptr + weight_rows * in_features + k_ids[:, None]
        accumulator = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k_start in range(0, in_features, BLOCK_K):
            k_mask = k_ids < in_features - k_start
            if HAS_ORDER:  # act-order: this expert's position i reads input order[expert, i]
                columns = tl.load(order_ptr + expert * in_features + k_start + k_ids, mask=k_mask, other=0)
            else:
                columns = k_start + k_ids
            activations = tl.load(
                input_row_ptrs + columns[None, :], mask=pair_mask[:, None] & k_mask[None, :], other=0.0
            )
            weight_mask = k_mask[:, None] & col_mask[None, :]
            if SCALE_PER_TILE:  # a K tile lies in one group (int4) or block (FP8): scaled after the dot
                scale = tl.load(scale_ptr + group_row + k_start // group_size, mask=col_mask, other=0.0)
            if INT4:  # (q - zero) is exact in the dot dtype
                zero = tl.load(zero_ptr + group_row + k_start // group_size, mask=col_mask, other=0)
                zero = zero.to(tl.int32)
                words = tl.load(weight_tile, mask=weight_mask, other=0)
                weights = (((words >> shifts) & 0xF) - zero[None, :]).to(tl.float32)
                weight_tile += BLOCK_K // 8
            else:
                weights = tl.load(weight_tile, mask=weight_mask, other=0.0).to(tl.float32)
                weight_tile += BLOCK_K
            partial = tl.dot(
                activations.to(tl.float32).to(DOT_DTYPE), weights.to(DOT_DTYPE), input_precision=DOT_PRECISION
            )
            if SCALE_PER_TILE:
                accumulator += partial * scale.to(tl.float32)[None, :]
            else:
                accumulator += partial
        if SCALE_PER_ROW:  # FP8 with a scale per output row, constant along K: applied once
            row_scale = tl.load(scale_ptr + expert * out_features + col_ids, mask=col_mask, other=0.0)
            accumulator = accumulator * row_scale.to(tl.float32)[None, :]
        if SCALE_BY_ROUTER:
            router = tl.load(router_weights_ptr + pairs, mask=pair_mask, other=0.0).to(tl.float32)
            accumulator = accumulator * router[:, None]
        tl.store(
            output_ptr + pairs[:, None].to(tl.int64) * output_row_stride + col_ids[None, :],
            round_to(accumulator, output_ptr.dtype.element_ty),
            mask=pair_mask[:, None] & col_mask[None, :],
        )


def align_pairs_by_expert(
    expert_ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``expert_ids``: [tokens, top_k] -> (pair ids [blocks * block_m]: pair ``t * top_k + j`` at its
    place in its expert's padded run, ``tokens * top_k`` in the padding; the expert of each block
    [blocks], ``num_experts`` for blocks past the end). Device ops only: no host sync."""
    flat = expert_ids.reshape(-1).long()
    num_pairs = flat.numel()
    counts = torch.zeros(num_experts, dtype=torch.long, device=flat.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    padded_ends = torch.cumsum(padded, 0)
    order = torch.argsort(flat, stable=True)
    sorted_experts = flat[order]
    rank = torch.arange(num_pairs, device=flat.device) - (torch.cumsum(counts, 0) - counts)[sorted_experts]
    blocks = triton.cdiv(num_pairs + num_experts * (block_m - 1), block_m)
    pair_ids = torch.full((blocks * block_m,), num_pairs, dtype=torch.int32, device=flat.device)
    pair_ids[(padded_ends - padded)[sorted_experts] + rank] = order.to(torch.int32)
    block_starts = torch.arange(blocks, device=flat.device) * block_m
    block_experts = torch.searchsorted(padded_ends, block_starts, right=True).to(torch.int32)
    return pair_ids, block_experts


def _check_experts(
    op: str, name: str, experts: ExpertWeights, activation_dtype: torch.dtype, shape: list[int]
) -> int:
    """Validates one projection's stacked experts [experts, out, in]; returns the inputs per scale
    along K (an int4 group, an FP8 block's columns; 0 for float and FP8 with a scale per row)."""
    num_experts, out_features, in_features = shape
    weight = experts.weight
    if experts.is_int4:
        assert experts.scale is not None and experts.zero is not None  # int4 holds both
        check_dtype(op, f"{name}.weight", weight, (torch.int32,))
        check_dtype(op, f"{name}.scale", experts.scale, (torch.float16, torch.bfloat16, torch.float32))
        check_dtype(op, f"{name}.zero", experts.zero, (torch.uint8,))
        check_shape(op, f"{name}.weight", weight, [num_experts, out_features, in_features // 8])
        groups = experts.scale.shape[-1] if experts.scale.dim() == 3 else 0
        if in_features % 8 or groups < 1 or in_features % groups or (in_features // groups) % 16:
            raise ValueError(
                f"{op}: {name} needs inputs in whole words of 8 and groups of a multiple of 16 inputs; "
                f"got {in_features} inputs, scale {list(experts.scale.shape)}"
            )
        check_shape(op, f"{name}.scale", experts.scale, [num_experts, out_features, groups])
        check_shape(op, f"{name}.zero", experts.zero, [num_experts, out_features, groups])
        parts = {"weight": weight, "scale": experts.scale, "zero": experts.zero}
        if experts.input_order is not None:
            check_dtype(op, f"{name}.input_order", experts.input_order, (torch.int32,))
            check_shape(op, f"{name}.input_order", experts.input_order, [num_experts, in_features])
            parts["input_order"] = experts.input_order
        for part, tensor in parts.items():
            check_contiguous(op, f"{name}.{part}", tensor)
        return in_features // groups
    if experts.input_order is not None:
        raise ValueError(f"{op}: {name} has an input order; only int4 experts are act-order permuted")
    if not experts.is_fp8:
        check_dtype(op, name, weight, (activation_dtype,))
        check_shape(op, name, weight, shape)
        check_contiguous(op, name, weight)
        return 0
    assert experts.scale is not None  # FP8 holds its scales
    check_dtype(op, f"{name}.weight", weight, (torch.float8_e4m3fn,))
    check_shape(op, f"{name}.weight", weight, shape)
    check_dtype(op, f"{name}.scale", experts.scale, (torch.float32,))
    scale_shape = [num_experts, out_features]
    if experts.block_size is not None:
        rows, columns = experts.block_size
        if rows < 1 or columns < 1 or columns % 16:
            raise ValueError(
                f"{op}: {name}.block_size {experts.block_size} (rows, columns) of FP8 blocks: accepted "
                "rows >= 1 and columns a positive multiple of 16"
            )
        scale_shape = [num_experts, triton.cdiv(out_features, rows), triton.cdiv(in_features, columns)]
    check_shape(op, f"{name}.scale", experts.scale, scale_shape)
    for part, tensor in (("weight", weight), ("scale", experts.scale)):
        check_contiguous(op, f"{name}.{part}", tensor)
    return experts.block_size[1] if experts.block_size is not None else 0


def _grouped_matmul(
    inputs: torch.Tensor,
    experts: ExpertWeights,
    group_size: int,
    pair_ids: torch.Tensor,
    block_experts: torch.Tensor,
    num_pairs: int,
    top_k: int,
    router_weights: torch.Tensor | None,
    output_dtype: torch.dtype,
    block_m: int,
) -> torch.Tensor:
    """One launch: every pair's row times its expert's weight [experts, out, in] -> [pairs, out]."""
    out_features, in_features = experts.out_features, experts.in_features
    output = torch.empty((num_pairs, out_features), dtype=output_dtype, device=inputs.device)
    # a K tile must lie in one group or block: the largest power of two dividing its size, <= 64
    block_n, block_k = 64, min(64, group_size & -group_size) if group_size else 64
    rows_per_scale = experts.block_size[0] if experts.block_size is not None else 1
    dot_dtype = dot_operand_dtype(_grouped_matmul_kernel, inputs.dtype)
    grid = (triton.cdiv(out_features, block_n), block_experts.numel())
    weight = experts.weight
    _grouped_matmul_kernel[grid](
        inputs,
        weight,
        experts.scale if experts.scale is not None else weight,
        experts.zero if experts.zero is not None else weight,
        experts.input_order if experts.input_order is not None else weight,
        output,
        pair_ids,
        block_experts,
        router_weights if router_weights is not None else output,
        num_pairs,
        experts.num_experts,
        out_features,
        in_features,
        triton.cdiv(out_features, rows_per_scale),
        rows_per_scale,
        triton.cdiv(in_features, group_size) if group_size else 1,
        group_size or in_features,
        top_k,
        inputs.stride(0),
        output.stride(0),
        INPUT_PER_TOKEN=router_weights is None,
        SCALE_BY_ROUTER=router_weights is not None,
        INT4=experts.is_int4,
        SCALE_PER_TILE=group_size > 0,
        SCALE_PER_ROW=experts.is_fp8 and experts.block_size is None,
        HAS_ORDER=experts.input_order is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        DOT_DTYPE=dot_dtype,
        DOT_PRECISION=dot_input_precision(dot_dtype),
        num_warps=4,
        num_stages=3,
    )
    return output


def fused_experts(
    hidden: torch.Tensor,
    gate_up: torch.Tensor | ExpertWeights,
    down: torch.Tensor | ExpertWeights,
    router_weights: torch.Tensor,
    expert_ids: torch.Tensor,
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor],
    block_m: int = 16,
) -> torch.Tensor:
    """``hidden``: [tokens, hidden]; ``gate_up``: [experts, 2 * intermediate, hidden]; ``down``:
    [experts, hidden, intermediate] (float in ``hidden``'s dtype, or ``ExpertWeights`` kept as stored
    in FP8 or int4, dequantized in the inner loop); ``router_weights``: float32 [tokens, top_k] and
    ``expert_ids``: [tokens, top_k] (int32/int64) -> sum over k of router weight * expert(hidden),
    [tokens, hidden] in ``hidden``'s dtype (summed in float32). ``silu_and_mul``: [rows, 2 * I] ->
    [rows, I]."""
    op = "fused_experts"
    gate_up, down = as_expert_weights(gate_up), as_expert_weights(down)
    check_dtype(op, "hidden", hidden, FLOAT_ACTIVATION_DTYPES)
    check_dtype(op, "router_weights", router_weights, (torch.float32,))
    check_dtype(op, "expert_ids", expert_ids, (torch.int32, torch.int64))
    if hidden.dim() != 2 or gate_up.weight.dim() != 3 or down.weight.dim() != 3:
        raise ValueError(
            f"{op}: hidden must be [tokens, hidden], gate_up [experts, 2 * intermediate, hidden] and down "
            f"[experts, hidden, intermediate]; got {list(hidden.shape)}, {list(gate_up.weight.shape)} "
            f"and {list(down.weight.shape)}"
        )
    tokens, hidden_size = hidden.shape
    num_experts, double_intermediate = gate_up.num_experts, gate_up.out_features
    gate_up_group = _check_experts(
        op, "gate_up", gate_up, hidden.dtype, [num_experts, double_intermediate, hidden_size]
    )
    down_group = _check_experts(
        op, "down", down, hidden.dtype, [num_experts, hidden_size, double_intermediate // 2]
    )
    check_shape(op, "expert_ids", expert_ids, [tokens, None])
    check_shape(op, "router_weights", router_weights, list(expert_ids.shape))
    check_contiguous(op, "hidden", hidden)
    # the routing too: align_pairs_by_expert builds the pair ids on expert_ids' device
    tensors = {"hidden": hidden, "router_weights": router_weights, "expert_ids": expert_ids}
    for name, experts in (("gate_up", gate_up), ("down", down)):
        parts = {"weight": experts.weight, "scale": experts.scale, "zero": experts.zero}
        parts["input_order"] = experts.input_order
        tensors.update({f"{name}.{part}": t for part, t in parts.items() if t is not None})
    check_launchable(_grouped_matmul_kernel, op, tensors)
    top_k = expert_ids.shape[1]
    if tokens == 0:
        return torch.zeros_like(hidden)
    num_pairs = tokens * top_k
    pair_ids, block_experts = align_pairs_by_expert(expert_ids, num_experts, block_m)
    shared = (pair_ids, block_experts, num_pairs, top_k)
    gate_up_rows = _grouped_matmul(hidden, gate_up, gate_up_group, *shared, None, hidden.dtype, block_m)
    activated = silu_and_mul(gate_up_rows).contiguous()  # [pairs, intermediate]
    weights = router_weights.reshape(-1).contiguous()
    down_rows = _grouped_matmul(activated, down, down_group, *shared, weights, torch.float32, block_m)
    return down_rows.view(tokens, top_k, hidden_size).sum(dim=1).to(hidden.dtype)
