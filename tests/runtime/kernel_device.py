"""Where a kernel test runs its Triton kernel: the CPU under the interpreter (TRITON_INTERPRET=1, as
scripts/test.sh sets it), else a CUDA device; without either the test is skipped, saying why."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from berth_runtime.kernels._launch import runs_interpreted


def kernel_device(kernel: Any) -> str:
    """ "cpu" when `kernel` runs interpreted, "cuda" when a GPU is there; skips the test otherwise."""
    if runs_interpreted(kernel):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1 (scripts/test.sh sets it)")
