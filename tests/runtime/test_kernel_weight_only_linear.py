"""The weight-only kernel computes ``(x @ q.T) * scale + bias`` (the torch reference) for int8 and fp8
(e4m3) weights, for decode-sized and prefill-sized batches."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import torch_reference
from berth_runtime.kernels import weight_only_linear as module
from berth_runtime.kernels.weight_only_linear import weight_only_linear


@pytest.fixture
def device() -> str:
    return kernel_device(module._weight_only_matmul_kernel)


def _fp8_usable(device: str) -> bool:
    """e4m3 needs compute capability >= 8.9 on a GPU; the interpreter converts it in software."""
    return device == "cpu" or torch.cuda.get_device_capability() >= (8, 9)


def _weights(weight_dtype: torch.dtype, out_features: int, in_features: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(out_features)
    if weight_dtype == torch.int8:
        return torch.randint(
            -127, 128, (out_features, in_features), generator=generator, dtype=torch.int8
        ).to(device)
    return (100 * torch.randn(out_features, in_features, generator=generator)).to(weight_dtype).to(device)


@pytest.mark.parametrize("weight_dtype", [torch.int8, torch.float8_e4m3fn])
@pytest.mark.parametrize("rows", [1, 3, 40, 130])
def test_matches_reference(device: str, weight_dtype: torch.dtype, rows: int) -> None:
    if weight_dtype == torch.float8_e4m3fn and not _fp8_usable(device):
        pytest.skip("float8 e4m3 needs a GPU with compute capability >= 8.9 (Ada, Hopper)")
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 72, generator=generator).to(device, torch.bfloat16)
    qweight = _weights(weight_dtype, 48, 72, device)
    scale = (torch.rand(48, generator=generator) * 1e-2).to(device)
    bias = torch.randn(48, generator=generator).to(device, torch.bfloat16)
    actual = weight_only_linear(x, qweight, scale, bias)
    expected = torch_reference.weight_only_linear(x, qweight, scale, bias)
    assert actual.dtype == torch.bfloat16 and actual.shape == (rows, 48)
    torch.testing.assert_close(actual, expected, rtol=2e-2, atol=2e-2)


def test_float32_activations_without_bias(device: str) -> None:
    x = torch.randn(2, 40, device=device)
    qweight = _weights(torch.int8, 24, 40, device)
    scale = torch.full((24,), 0.5, device=device)
    expected = (x @ qweight.float().t()) * 0.5
    torch.testing.assert_close(weight_only_linear(x, qweight, scale), expected, rtol=1e-4, atol=1e-3)


def test_scale_is_per_output_channel(device: str) -> None:
    x = torch.ones(1, 16, device=device)
    qweight = torch.ones(3, 16, dtype=torch.int8, device=device)
    scale = torch.tensor([1.0, 2.0, 0.5], device=device)
    torch.testing.assert_close(
        weight_only_linear(x, qweight, scale), torch.tensor([[16.0, 32.0, 8.0]], device=device)
    )


def test_bad_arguments_are_rejected(device: str) -> None:
    x = torch.randn(2, 16, device=device)
    qweight = torch.ones(4, 16, dtype=torch.int8, device=device)
    scale = torch.ones(4, device=device)
    with pytest.raises(ValueError, match="x has 8 input features; qweight expects 16"):
        weight_only_linear(x[:, :8], qweight, scale)
    with pytest.raises(ValueError, match="qweight has dtype bfloat16; accepted: int8, float8_e4m3fn"):
        weight_only_linear(x, qweight.bfloat16(), scale)
    with pytest.raises(ValueError, match="scale has dtype bfloat16; accepted: float32"):
        weight_only_linear(x, qweight, scale.bfloat16())
    with pytest.raises(ValueError, match=r"bias has shape \[3\]; expected \[4\]"):
        weight_only_linear(x, qweight, scale, torch.ones(3, device=device))
    with pytest.raises(ValueError, match="qweight must be contiguous in its last"):
        weight_only_linear(x, torch.ones(16, 4, dtype=torch.int8, device=device).t(), scale)


@pytest.mark.parametrize("tiles", [(16, 16, 32, 4), (16, 32, 64, 4), (32, 16, 16, 2), (64, 64, 32, 4)])
@pytest.mark.parametrize("weight_dtype", [torch.int8, torch.float8_e4m3fn])
def test_every_tile_shape_computes_the_same_product(
    device: str, tiles: tuple[int, int, int, int], weight_dtype: torch.dtype
) -> None:
    """Tile sizes (what bench/kernels.py sweeps) change the schedule, never the result: K and N not
    multiples of the tile, rows fewer than BLOCK_M."""
    if weight_dtype == torch.float8_e4m3fn and not _fp8_usable(device):
        pytest.skip("float8 e4m3 needs a GPU with compute capability >= 8.9 (Ada, Hopper)")
    generator = torch.Generator().manual_seed(tiles[0])
    x = torch.randn(3, 72, generator=generator).to(device, torch.bfloat16)
    qweight = _weights(weight_dtype, 40, 72, device)
    scale = (torch.rand(40, generator=generator) * 1e-2).to(device)
    bias = torch.randn(40, generator=generator).to(device, torch.bfloat16)
    actual = weight_only_linear(x, qweight, scale, bias, tile_sizes=tiles)
    torch.testing.assert_close(
        actual, torch_reference.weight_only_linear(x, qweight, scale, bias), rtol=2e-2, atol=2e-2
    )


def test_bad_tile_sizes_are_rejected(device: str) -> None:
    x = torch.randn(2, 16, device=device)
    qweight = torch.ones(4, 16, dtype=torch.int8, device=device)
    scale = torch.ones(4, device=device)
    accepted = r"must be powers of two, BLOCK_M, BLOCK_N and BLOCK_K >= 16"
    for tiles in ((16, 8, 64, 4), (48, 16, 16, 4), (8, 16, 16, 4)):
        with pytest.raises(ValueError, match=rf"tile_sizes \({', '.join(map(str, tiles))}\) {accepted}"):
            weight_only_linear(x, qweight, scale, tile_sizes=tiles)
