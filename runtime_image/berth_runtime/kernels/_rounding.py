"""Round-to-nearest-even from float32 to the activation dtype, identical on GPUs and the interpreter.

GPUs round ``x.to(tl.bfloat16)`` to nearest-even; Triton's interpreter truncates instead, which would
make every CPU comparison against PyTorch off by one bf16 ulp. Doing the bf16 rounding with integer
operations gives the same bits everywhere for the cost of three integer ops per element (the kernels
that use it are memory-bound). float16 and float32 use the native conversion, correct on both.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def round_to(x, dtype: tl.constexpr):
    """``x`` (float32) rounded to ``dtype``; NaN and infinity are preserved."""
    if dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)
    else:
        return x.to(dtype)
