"""On CUDA (compiled, not interpreted; compute capability >= 8.9): the weight-only kernel's block-scale
mode, how block-wise FP8 checkpoints (Qwen3-*-FP8) run their dense linears as stored, against the torch
reference (the weight dequantized per 128 x 128 block) at Qwen3-8B's shapes, decode and prefill rows,
bf16 and fp32 activations; and a partial edge block with a requested K tile wider than a block."""

from __future__ import annotations

import pytest
import torch

from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.weight_only_linear import weight_only_linear

SHAPES = {"qkv": (6144, 4096), "gate_up": (24576, 4096), "down": (4096, 12288)}  # Qwen3-8B


@pytest.fixture(autouse=True)
def _needs_e4m3() -> None:
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 e4m3 needs compute capability >= 8.9 (block FP8 is dequantized at load below it)")


def _block_fp8(out: int, inputs: int, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    weight = (torch.randn(out, inputs, device="cuda") * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    scale = torch.rand(-(-out // block[0]), -(-inputs // block[1]), device="cuda") * 1e-4 + 1e-6
    return weight, scale


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("rows", [1, 16, 200])
@pytest.mark.parametrize("layer", list(SHAPES))
def test_block_fp8_matches_reference(layer: str, rows: int, dtype: torch.dtype) -> None:
    qweight, scale = _block_fp8(*SHAPES[layer], (128, 128))
    x = torch.randn(rows, qweight.shape[1], device="cuda", dtype=dtype)
    actual = weight_only_linear(x, qweight, scale, block_size=(128, 128))
    expected = torch_reference.weight_only_linear(x, qweight, scale, None, (128, 128))
    # bf16: the output's rounding (both sides round the same fp32 sum, accumulated in another order);
    # fp32: the dot runs at ieee precision, so only the order of the sum differs
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-4
    scale_of_output = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale_of_output)


def test_partial_blocks_and_capped_k_tiles() -> None:
    qweight, scale = _block_fp8(1000, 1040, (128, 128))  # last row block 104 rows, last column block 16
    x = torch.randn(5, 1040, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(1000, device="cuda", dtype=torch.bfloat16)
    actual = weight_only_linear(x, qweight, scale, bias, tile_sizes=(16, 64, 256, 4), block_size=(128, 128))
    expected = torch_reference.weight_only_linear(x, qweight, scale, bias, (128, 128))
    torch.testing.assert_close(actual, expected, rtol=1e-2, atol=1e-2 * expected.abs().max().item())
