"""SiLU-and-multiply equals the torch reference, ``silu(gate) * up``, over the fused gate/up projection."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import activation as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.activation import silu_and_mul


@pytest.fixture
def device() -> str:
    return kernel_device(module._silu_and_mul_kernel)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("intermediate", [24, 1500])
def test_silu_and_mul_matches_reference(device: str, dtype: torch.dtype, intermediate: int) -> None:
    gate_up = (3 * torch.randn(3, 2 * intermediate, generator=torch.Generator().manual_seed(0))).to(
        device, dtype
    )
    actual = silu_and_mul(gate_up)
    expected = torch_reference.silu_and_mul(gate_up)
    assert actual.shape == (3, intermediate)
    # exp() may differ from PyTorch's by an ulp of float32, which can move the rounding by one ulp
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(actual, expected, rtol=2 * ulp, atol=1e-6)


def test_gate_comes_first(device: str) -> None:
    gate_up = torch.tensor([[0.0, 2.0, 5.0, 7.0]], device=device)  # gate = [0, 2], up = [5, 7]
    expected = torch.tensor([[0.0, 2.0 / (1 + torch.exp(torch.tensor(-2.0)).item()) * 7.0]], device=device)
    torch.testing.assert_close(silu_and_mul(gate_up), expected)


def test_odd_width_and_wrong_rank_are_rejected(device: str) -> None:
    with pytest.raises(ValueError, match=r"even last dimension; got shape \[2, 5\]"):
        silu_and_mul(torch.randn(2, 5, device=device))
    with pytest.raises(ValueError, match="gate_up must be 2-D"):
        silu_and_mul(torch.randn(2, 2, 4, device=device))
    with pytest.raises(ValueError, match="gate_up has dtype int32; accepted: float16, bfloat16, float32"):
        silu_and_mul(torch.zeros(2, 4, dtype=torch.int32, device=device))
