"""Per-channel int8 / fp8 quantization: error bounds, edge cases, and the module swap."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from berth_runtime.quantization import WeightOnlyLinear, quantize_linear_layers
from berth_runtime.quantization.quantize import dequantize, quantize_fp8, quantize_int8


def test_int8_round_trip_error_is_at_most_half_a_step_per_row() -> None:
    weight = (
        torch.randn(16, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 16)[:, None]
    )
    quantized, scale = quantize_int8(weight)
    assert quantized.dtype == torch.int8 and scale.shape == (16,)
    assert quantized.abs().amax(dim=1).eq(127).all()  # each row's largest value maps to 127
    error = (dequantize(quantized, scale, torch.float32) - weight).abs()
    assert (error <= scale[:, None] / 2 + 1e-7).all()


def test_fp8_round_trip_keeps_three_mantissa_bits() -> None:
    weight = torch.randn(8, 128, generator=torch.Generator().manual_seed(1))
    quantized, scale = quantize_fp8(weight)
    assert quantized.dtype == torch.float8_e4m3fn
    restored = dequantize(quantized, scale, torch.float32)
    normal = weight.abs() > scale[:, None] * 2**-6  # outside e4m3's subnormal range
    relative = ((restored - weight).abs() / weight.abs())[normal]
    assert relative.max() <= 2**-4 + 1e-6


def test_zero_rows_stay_zero_and_bad_weights_are_refused() -> None:
    weight = torch.zeros(2, 4)
    weight[1] = torch.tensor([1.0, -2.0, 0.5, 0.0])
    quantized, scale = quantize_int8(weight)
    assert scale[0] == 1.0 and quantized[0].eq(0).all()
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_int8(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"weight must be 2-D .* got shape \[4\]"):
        quantize_fp8(torch.ones(4))
    with pytest.raises(ValueError, match="floating-point"):
        quantize_int8(torch.ones(2, 2, dtype=torch.int32))


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(32, 48)
        self.down = nn.Linear(48, 32, bias=False)
        self.norm = nn.LayerNorm(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(self.norm(x))))


@pytest.mark.parametrize("method", ["int8", "fp8"])
def test_every_linear_is_replaced_and_the_output_stays_close(method: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_Block(), _Block())
    x = torch.randn(3, 5, 32)
    expected = model(x)
    assert quantize_linear_layers(model, method) == 4
    assert not any(isinstance(module, nn.Linear) for module in model.modules())
    assert sum(isinstance(module, WeightOnlyLinear) for module in model.modules()) == 4
    assert isinstance(model[0].norm, nn.LayerNorm)
    actual = model(x)
    assert actual.shape == expected.shape
    assert not torch.equal(actual, expected)  # the weights really are quantized
    cosine = nn.functional.cosine_similarity(actual.flatten(0, 1), expected.flatten(0, 1), dim=-1)
    assert cosine.min() > (0.999 if method == "int8" else 0.99)


def test_state_moves_with_the_module_and_the_bias_is_kept() -> None:
    linear = nn.Linear(8, 4)
    quantized = WeightOnlyLinear.from_linear(linear, "int8")
    assert set(dict(quantized.named_buffers())) == {"qweight", "scale", "bias"}
    assert torch.equal(quantized.bias, linear.bias.detach())
    assert "weight=torch.int8" in repr(quantized)


def test_unknown_methods_are_rejected_and_none_changes_nothing() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    assert quantize_linear_layers(model, "none") == 0
    assert isinstance(model[0], nn.Linear)
    with pytest.raises(ValueError, match="quantization 'int4' is not supported; accepted: none, int8, fp8"):
        quantize_linear_layers(model, "int4")
    with pytest.raises(ValueError, match="accepted: int8, fp8"):
        WeightOnlyLinear.from_linear(nn.Linear(4, 4), "none")
