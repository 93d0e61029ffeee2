"""The fused RMSNorm kernel equals the torch reference (Hugging Face's RMSNorm arithmetic) bit for bit
under the interpreter, residual add included."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import rms_norm as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.rms_norm import add_rms_norm, rms_norm


@pytest.fixture
def device() -> str:
    return kernel_device(module._rms_norm_kernel)


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    if actual.device.type == "cpu" and actual.dtype != torch.float32:
        # the interpreter rounds to bf16/fp16 exactly like PyTorch, so the bits agree
        assert torch.equal(actual, expected)
    else:  # float32 sums in another order; GPU rsqrt may differ by an ulp of float32
        torch.testing.assert_close(actual, expected, rtol=2**-7, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("hidden_size", [48, 64])
def test_rms_norm_matches_reference(device: str, dtype: torch.dtype, hidden_size: int) -> None:
    generator = torch.Generator().manual_seed(hidden_size)
    x = torch.randn(5, hidden_size, generator=generator).to(device, dtype)
    weight = (1 + 0.1 * torch.randn(hidden_size, generator=generator)).to(device, dtype)
    _assert_same(rms_norm(x, weight, 1e-5), torch_reference.rms_norm(x, weight, 1e-5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_add_rms_norm_updates_residual_and_normalises_the_sum(device: str, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 40, generator=generator).to(device, dtype)
    residual = torch.randn(4, 40, generator=generator).to(device, dtype)
    weight = torch.randn(40, generator=generator).to(device, dtype)
    kernel_residual = residual.clone()
    normed = add_rms_norm(x, kernel_residual, weight, 1e-6)
    expected, expected_residual = torch_reference.add_rms_norm(x, residual, weight, 1e-6)
    _assert_same(kernel_residual, expected_residual)
    _assert_same(normed, expected)
    assert not torch.equal(kernel_residual, residual)


def test_rows_with_a_stride_are_read_correctly(device: str) -> None:
    wide = torch.randn(3, 80, device=device)
    x = wide[:, :32]  # row stride 80, inner dimension packed
    weight = torch.randn(32, device=device)
    _assert_same(rms_norm(x, weight, 1e-6), torch_reference.rms_norm(x, weight, 1e-6))


def test_empty_batch_gives_empty_output(device: str) -> None:
    out = rms_norm(torch.empty(0, 16, device=device), torch.ones(16, device=device), 1e-6)
    assert out.shape == (0, 16)


@pytest.mark.parametrize(
    ("x_shape", "weight_shape", "message"),
    [
        ((4, 16), (8,), r"weight has shape \[8\]; expected \[16\]"),
        ((4, 2, 16), (16,), r"x must be 2-D"),
    ],
)
def test_bad_shapes_are_rejected_with_the_argument_named(
    device: str, x_shape: tuple[int, ...], weight_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rms_norm(torch.randn(x_shape, device=device), torch.ones(weight_shape, device=device), 1e-6)


def test_mixed_dtypes_and_non_contiguous_rows_are_rejected(device: str) -> None:
    x = torch.randn(4, 16, device=device)
    with pytest.raises(ValueError, match="x=float32, weight=bfloat16"):
        rms_norm(x, torch.ones(16, device=device, dtype=torch.bfloat16), 1e-6)
    with pytest.raises(ValueError, match="x must be contiguous in its last"):
        rms_norm(torch.randn(16, 4, device=device).t(), torch.ones(16, device=device), 1e-6)
    with pytest.raises(ValueError, match="residual has shape"):
        add_rms_norm(x, torch.randn(3, 16, device=device), torch.ones(16, device=device), 1e-6)


def test_add_rms_norm_can_leave_the_residual_untouched(device: str) -> None:
    x = torch.randn(3, 32, device=device, dtype=torch.bfloat16)
    residual = torch.randn(3, 32, device=device, dtype=torch.bfloat16)
    weight = torch.randn(32, device=device, dtype=torch.bfloat16)
    original = residual.clone()
    summed = torch.empty_like(residual)
    normed = add_rms_norm(x, residual, weight, 1e-6, residual_out=summed)
    assert torch.equal(residual, original)
    _assert_same(summed, x + original)
    _assert_same(normed, torch_reference.rms_norm(x + original, weight, 1e-6))
