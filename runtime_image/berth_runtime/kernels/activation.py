"""SiLU-and-multiply, the gated MLP's activation, as one kernel over the fused gate/up projection.

With gate and up projected by one GEMM into ``[tokens, 2 * intermediate]``, eager PyTorch still needs a
slice, a SiLU and a multiply (three passes, two temporaries). This kernel reads each half once and
writes the product once. Rounding follows eager bf16/fp16 (``silu`` rounded to the activation dtype,
then the product rounded), so outputs match the reference model bit for bit.
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
)
from berth_runtime.kernels._rounding import round_to


@triton.jit
def _silu_and_mul_kernel(
    input_ptr,
    output_ptr,
    input_row_stride,
    output_row_stride,
    intermediate_size,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < intermediate_size
    gate = tl.load(input_ptr + row * input_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(input_ptr + row * input_row_stride + intermediate_size + cols, mask=mask, other=0.0)
    dtype = output_ptr.dtype.element_ty
    activated = round_to(gate / (1.0 + tl.exp(-gate)), dtype).to(tl.float32)
    product = activated * up.to(tl.float32)
    tl.store(output_ptr + row * output_row_stride + cols, round_to(product, dtype), mask=mask)


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``gate_up``: [tokens, 2 * intermediate], gate first; gives silu(gate) * up: [tokens, intermediate]."""
    op = "silu_and_mul"
    check_dtype(op, "gate_up", gate_up, FLOAT_ACTIVATION_DTYPES)
    if gate_up.dim() != 2 or gate_up.shape[1] % 2 != 0:
        raise ValueError(
            f"{op}: gate_up must be 2-D [tokens, 2 * intermediate] with an even last dimension; "
            f"got shape {list(gate_up.shape)}"
        )
    check_inner_contiguous(op, "gate_up", gate_up)
    check_launchable(_silu_and_mul_kernel, op, {"gate_up": gate_up})
    tokens, width = gate_up.shape
    intermediate_size = width // 2
    output = torch.empty((tokens, intermediate_size), dtype=gate_up.dtype, device=gate_up.device)
    if tokens == 0:
        return output
    block = min(1024, triton.next_power_of_2(intermediate_size))
    grid = (tokens, triton.cdiv(intermediate_size, block))
    _silu_and_mul_kernel[grid](
        gate_up,
        output,
        gate_up.stride(0),
        output.stride(0),
        intermediate_size,
        BLOCK=block,
        num_warps=4,
    )
    return output
