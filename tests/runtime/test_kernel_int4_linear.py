"""The int4 kernel computes ``x @ dequantize(q, scale, zero).T + bias`` (the torch reference) in both
variants (CUDA-core GEMV for a few rows, tensor-core tiles for more), and AWQ, GPTQ and
compressed-tensors pack-quantized checkpoints load as stored: `Int4Linear`s holding packed nibbles
whose kernel output equals the layer's reference, with act-order inputs permuted so each group is
contiguous."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_reference import make_engine
from kernel_device import kernel_device
from model_family_checks import ATOL, max_logit_difference
from safetensors.torch import load_file
from test_model_family_prequantized import write_prequantized

from berth_runtime.kernels import int4_linear as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.int4_linear import int4_linear
from berth_runtime.models.int4_formats import dequantize_gptq, gptq_to_int4
from berth_runtime.quantization.int4_linear import Int4Linear

pytest_plugins = ["moe_checkpoints"]


@pytest.fixture
def device() -> str:
    return kernel_device(module._int4_matmul_kernel)


def _random_int4(
    out_features: int, in_features: int, group_size: int, device: str
) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(out_features + in_features)
    qweight = torch.randint(-(2**31), 2**31 - 1, (out_features, in_features // 8), generator=generator)
    groups = in_features // group_size
    scale = (torch.rand(out_features, groups, generator=generator) * 0.02 + 0.001).half()
    zero = torch.randint(0, 16, (out_features, groups), generator=generator).to(torch.uint8)
    return qweight.to(torch.int32).to(device), scale.to(device), zero.to(device)


@pytest.mark.parametrize(
    ("rows", "dtype"), [(1, torch.bfloat16), (3, torch.float32), (20, torch.bfloat16), (70, torch.float16)]
)
def test_kernel_matches_reference(device: str, rows: int, dtype: torch.dtype) -> None:
    qweight, scale, zero = _random_int4(48, 128, 32, device)
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 128, generator=generator).to(device, dtype)
    bias = torch.randn(48, generator=generator).to(device, dtype)
    actual = int4_linear(x, qweight, scale, zero, bias)
    expected = torch_reference.int4_linear(x, qweight, scale, zero, bias)
    assert actual.dtype == dtype and actual.shape == (rows, 48)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("tiles", [(2, 16, 16, 4), (16, 16, 32, 4)])
def test_gemv_and_tensor_core_variants_agree(device: str, tiles: tuple[int, int, int, int]) -> None:
    """Explicit tiles: a GEMV over two rows with K tiles smaller than a group, and a dot tile."""
    qweight, scale, zero = _random_int4(40, 64, 64, device)
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(5)).to(device)
    expected = torch_reference.int4_linear(x, qweight, scale, zero)
    actual = int4_linear(x, qweight, scale, zero, tile_sizes=tiles)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_wrapper_names_what_is_wrong(device: str) -> None:
    qweight, scale, zero = _random_int4(16, 64, 32, device)
    with pytest.raises(ValueError, match="x has 32 input features; qweight packs 64"):
        int4_linear(torch.zeros(1, 32, device=device), qweight, scale, zero)
    with pytest.raises(ValueError, match="zero has dtype int32; accepted: uint8"):
        int4_linear(torch.zeros(1, 64, device=device), qweight, scale, zero.int())
    with pytest.raises(ValueError, match="group size 8 must be a multiple of 16"):
        int4_linear(torch.zeros(1, 64, device=device), qweight, scale.repeat(1, 4), zero.repeat(1, 4))


@pytest.mark.parametrize("scheme", ["awq", "gptq", "int4-pack", "int4-pack-asymmetric-actorder"])
def test_checkpoints_load_as_stored_int4(
    tiny_llama_dir: Path, tmp_path: Path, device: str, scheme: str
) -> None:
    """Every decoder linear is an `Int4Linear` (int32 words, no float weight); q/k/v's rows equal the
    checkpoint's dequantized k_proj, and the kernel on the stored buffers equals the layer's output."""
    quantized_dir, float_dir = write_prequantized(tiny_llama_dir, tmp_path, scheme)
    layer = make_engine(quantized_dir).runner.model.layers[1]
    qkv = layer.qkv_proj
    assert isinstance(qkv, Int4Linear) and isinstance(layer.down_proj, Int4Linear)
    assert qkv.qweight.dtype == torch.int32 and not any(p.is_floating_point() for p in qkv.parameters())
    k_rows = slice(64, 96)  # q: 4 heads x 16, then k: 2 heads x 16
    order = slice(None) if qkv.input_permutation is None else qkv.input_permutation[1].long()
    dequantized = torch_reference.dequantize_int4(qkv.qweight, qkv.scale, qkv.zero)[k_rows]
    expected = load_file(str(float_dir / "model.safetensors"))["model.layers.1.self_attn.k_proj.weight"]
    torch.testing.assert_close(dequantized, expected[:, order], rtol=0, atol=1e-6)
    x = torch.randn(3, qkv.in_features, generator=torch.Generator().manual_seed(1))
    gathered = x if qkv.input_permutation is None else x[:, qkv.input_permutation[0].long()]
    kernel = int4_linear(
        gathered.to(device), qkv.qweight.to(device), qkv.scale.to(device), qkv.zero.to(device)
    )
    torch.testing.assert_close(kernel.cpu(), qkv(x), rtol=1e-4, atol=1e-4)


def test_fused_shards_with_different_input_orders_run_shard_by_shard() -> None:
    """A GPTQ layer whose fused checkpoint tensors were ordered differently gives each shard's own
    dequantized product."""
    generator = torch.Generator().manual_seed(3)
    layer = Int4Linear(64, 24, 32, None, [16, 8], torch.device("cpu"))
    weights = []
    for index, rows in enumerate((16, 8)):
        order = torch.randperm(64, generator=generator)
        qweight = torch.randint(-(2**31), 2**31 - 1, (8, rows), generator=generator, dtype=torch.int32)
        group_index = torch.empty(64, dtype=torch.long)
        group_index[order] = torch.arange(64) // 32
        zeros = torch.full((2, rows // 8), 0x77777777, dtype=torch.int32)
        scales = torch.rand(2, rows, generator=generator).half()
        weights.append(dequantize_gptq(qweight, zeros, scales, group_index))
        packed, scale, zero, permutation = gptq_to_int4(qweight, zeros, scales, group_index, "w")
        start = 16 * index
        layer.qweight[start : start + rows], layer.scale[start : start + rows] = packed, scale
        layer.zero[start : start + rows] = zero
        assert layer.input_permutation is not None
        layer.input_permutation[index] = permutation
    x = torch.randn(2, 64, generator=generator)
    torch.testing.assert_close(layer(x), x @ torch.cat(weights).t(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scheme", ["awq", "gptq"])
def test_a_mixture_of_experts_checkpoint_keeps_its_decoder_linears_as_int4(
    tiny_qwen2_moe_dir: Path, tmp_path: Path, scheme: str
) -> None:
    """Qwen2-MoE (experts, a shared expert, one dense layer): attention and the dense MLP load as
    `Int4Linear`s, the stacked experts are kept as stored int4; logits equal transformers' on the
    dequantized weights."""
    quantized_dir, float_dir = write_prequantized(tiny_qwen2_moe_dir, tmp_path, scheme)
    model = make_engine(quantized_dir).runner.model
    assert isinstance(model.layers[0].qkv_proj, Int4Linear) and isinstance(
        model.layers[1].down_proj, Int4Linear
    )
    assert model.layers[0].moe.experts_gate_up.weight.dtype == torch.int32  # experts kept as stored
    assert max_logit_difference(quantized_dir, decode_steps=3, reference_dir=float_dir) <= ATOL
