"""Fused RMSNorm, optionally with the residual add before it, in one pass over each row.

A decoder layer does ``residual = residual + sublayer_out; normed = rms_norm(residual)`` twice; in
eager PyTorch that is ~6 kernels and 4 extra passes over the activations. This kernel reads each row
once, writes the new residual and the normed row, and rounds exactly where Hugging Face's
``LlamaRMSNorm`` does (normalise in float32, round to the input dtype, then scale by the weight), so
greedy outputs stay identical to the reference model.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from berth_runtime.kernels._launch import (
    FLOAT_ACTIVATION_DTYPES,
    check_dtype,
    check_inner_contiguous,
    check_launchable,
    check_same_dtype,
    check_shape,
)
from berth_runtime.kernels._rounding import round_to


@triton.jit
def _rms_norm_kernel(
    input_ptr,
    residual_ptr,
    residual_out_ptr,
    weight_ptr,
    output_ptr,
    input_row_stride,
    residual_row_stride,
    residual_out_row_stride,
    output_row_stride,
    hidden_size,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < hidden_size
    x = tl.load(input_ptr + row * input_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        residual_row = residual_ptr + row * residual_row_stride + cols
        summed = x + tl.load(residual_row, mask=mask, other=0.0).to(tl.float32)
        # round to the activation dtype, as an eager bf16/fp16 add would, before normalising
        summed = round_to(summed, residual_ptr.dtype.element_ty)
        tl.store(residual_out_ptr + row * residual_out_row_stride + cols, summed, mask=mask)
        x = summed.to(tl.float32)
    variance = tl.sum(x * x, axis=0) / hidden_size
    dtype = output_ptr.dtype.element_ty
    normed = round_to(x * tl.rsqrt(variance + eps), dtype).to(tl.float32)
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(output_ptr + row * output_row_stride + cols, round_to(normed * weight, dtype), mask=mask)


def _check(
    op: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None,
    residual_out: torch.Tensor | None = None,
) -> None:
    check_dtype(op, "x", x, FLOAT_ACTIVATION_DTYPES)
    if x.dim() != 2:
        raise ValueError(f"{op}: x must be 2-D [tokens, hidden_size]; got shape {list(x.shape)}")
    hidden_size = x.shape[1]
    check_shape(op, "weight", weight, [hidden_size])
    check_inner_contiguous(op, "x", x)
    check_inner_contiguous(op, "weight", weight)
    tensors = {"x": x, "weight": weight}
    if residual is not None:
        check_shape(op, "residual", residual, list(x.shape))
        check_inner_contiguous(op, "residual", residual)
        tensors["residual"] = residual
    if residual_out is not None:
        check_shape(op, "residual_out", residual_out, list(x.shape))
        check_inner_contiguous(op, "residual_out", residual_out)
        tensors["residual_out"] = residual_out
    check_same_dtype(op, tensors)
    check_launchable(_rms_norm_kernel, op, tensors)
    if hidden_size > 65536:
        raise ValueError(f"{op}: hidden_size {hidden_size} exceeds the supported 65536")


def _launch(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None,
    residual_out: torch.Tensor | None,
) -> torch.Tensor:
    output = torch.empty_like(x)
    tokens, hidden_size = x.shape
    if tokens == 0:
        return output
    block = triton.next_power_of_2(hidden_size)
    _rms_norm_kernel[(tokens,)](
        x,
        residual if residual is not None else x,
        residual_out if residual_out is not None else x,
        weight,
        output,
        x.stride(0),
        residual.stride(0) if residual is not None else 0,
        residual_out.stride(0) if residual_out is not None else 0,
        output.stride(0),
        hidden_size,
        eps,
        HAS_RESIDUAL=residual is not None,
        BLOCK=block,
        num_warps=min(16, max(1, block // 256)),
    )
    return output


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x``: [tokens, hidden_size]; returns ``weight * normalise(x)`` in ``x``'s dtype."""
    _check("rms_norm", x, weight, None)
    return _launch(x, weight, eps, None, None)


def add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Writes ``x + residual`` (rounded to the dtype) to ``residual_out``, or in place into ``residual``
    when it is None, and returns ``rms_norm`` of that sum.

    ``x``, ``residual``, ``residual_out``: [tokens, hidden_size], one dtype; ``weight``: [hidden_size].
    """
    _check("add_rms_norm", x, weight, residual, residual_out)
    return _launch(x, weight, eps, residual, residual if residual_out is None else residual_out)
