"""The weight-only kernel's block-scale mode (block-wise FP8, as Qwen3's and DeepSeek's FP8 checkpoints
store their linears) equals the reference, which dequantizes the blocks per call: partial blocks at
both edges, K tiles capped inside a block's columns, decode- and prefill-sized batches, fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from berth_runtime.kernels import torch_reference
from berth_runtime.kernels import weight_only_linear as module
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.weight_only_linear import weight_only_linear


@pytest.fixture
def device() -> str:
    if runs_interpreted(module._weight_only_matmul_kernel):
        return "cpu"
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9):
        return "cuda"
    pytest.skip("block FP8 needs TRITON_INTERPRET=1 or a GPU with e4m3 (compute capability >= 8.9)")


def _block_fp8(
    out: int, inputs: int, block: tuple[int, int], device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """float8 weight [out, in] and block scales of very different sizes, so a scale read from the
    wrong block shows."""
    generator = torch.Generator().manual_seed(out * inputs)
    weight = (100 * torch.randn(out, inputs, generator=generator)).to(torch.float8_e4m3fn)
    blocks = -(-out // block[0]), -(-inputs // block[1])
    scale = torch.rand(blocks, generator=generator) * 1e-2 + 1e-4
    return weight.to(device), scale.to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 5, 40, 130])
def test_block_scales_match_the_reference(device: str, rows: int, dtype: torch.dtype) -> None:
    block = (32, 48)  # 72 outputs, 112 inputs: partial row and column blocks; BLOCK_K capped to 16
    qweight, scale = _block_fp8(72, 112, block, device)
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 112, generator=generator).to(device, dtype)
    bias = torch.randn(72, generator=generator).to(device, dtype)
    actual = weight_only_linear(x, qweight, scale, bias, block_size=block)
    expected = torch_reference.weight_only_linear(x, qweight, scale, bias, block)
    assert actual.dtype == dtype and actual.shape == (rows, 72)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


def test_tiles_wider_than_a_block_are_capped(device: str) -> None:
    """A requested BLOCK_K of 64 over 32-column blocks is run at 32: every tile inside one block."""
    qweight, scale = _block_fp8(40, 96, (16, 32), device)
    x = torch.randn(3, 96, device=device)
    actual = weight_only_linear(x, qweight, scale, tile_sizes=(16, 16, 64, 4), block_size=(16, 32))
    expected = x @ torch_reference.dequantize_fp8_blocks(qweight, scale, (16, 32)).t()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_bad_block_arguments_are_rejected(device: str) -> None:
    qweight, scale = _block_fp8(40, 96, (16, 32), device)
    x = torch.randn(2, 96, device=device)
    with pytest.raises(ValueError, match=r"scale has shape \[3, 3\]; expected \[3, 2\]"):
        weight_only_linear(x, qweight, scale, block_size=(16, 48))
    with pytest.raises(ValueError, match="a multiple of 16 columns"):
        weight_only_linear(x, qweight, scale, block_size=(16, 40))
    with pytest.raises(ValueError, match="qweight has dtype int8; accepted: float8_e4m3fn"):
        weight_only_linear(x, torch.ones(40, 96, dtype=torch.int8, device=device), scale, block_size=(16, 32))
