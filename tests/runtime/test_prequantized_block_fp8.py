"""Block-wise FP8 checkpoints (transformers' "fp8" with weight_block_size, how Qwen3-*-FP8 ships) keep
their dense linears as stored: float8 weights with their block scales in `WeightOnlyLinear`s, fused
q/k/v and gate/up as whole row blocks of each part, Qwen2-MoE's shared expert too; a fused linear whose
parts split a row block stays float, said in a log line, and so does everything on a GPU without e4m3.
Logits equal transformers' on the dequantized weights (fp32)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from engine_reference import make_engine
from model_family_checks import ATOL, max_logit_difference, write_family_model
from safetensors.torch import load_file
from test_model_family_prequantized import LINEARS, write_prequantized

from berth_runtime.models import loader
from berth_runtime.quantization import WeightOnlyLinear

pytest_plugins = ["moe_checkpoints"]


@pytest.fixture(scope="module")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return write_family_model(tmp_path_factory.mktemp("tiny-qwen3"), Qwen3Config, Qwen3ForCausalLM)


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_qwen3_dir"])
def test_dense_linears_hold_float8_with_block_scales(
    family: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Blocks of 32 x 48 over 64 inputs: partial column blocks; k's rows and scale rows sit after q's."""
    quantized_dir, float_dir = write_prequantized(request.getfixturevalue(family), tmp_path, "fp8-block")
    layer = make_engine(quantized_dir).runner.model.layers[1]
    for linear in (layer.qkv_proj, layer.o_proj, layer.gate_up_proj, layer.down_proj):
        assert isinstance(linear, WeightOnlyLinear) and linear.qweight.dtype == torch.float8_e4m3fn
        assert linear.block_size == (32, 48)
        assert linear.scale.shape == (-(-linear.out_features // 32), -(-linear.in_features // 48))
    stored = load_file(str(quantized_dir / "model.safetensors"))
    k_name = "model.layers.1.self_attn.k_proj"
    assert torch.equal(layer.qkv_proj.qweight[64:96].float(), stored[f"{k_name}.weight"].float())
    assert torch.equal(layer.qkv_proj.scale[2:3], stored[f"{k_name}.weight_scale_inv"].float())
    assert max_logit_difference(quantized_dir, decode_steps=3, reference_dir=float_dir) <= ATOL


def test_fused_parts_that_split_a_row_block_stay_float(
    tiny_llama_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """48-row blocks: q (64 rows) and gate (128) end inside a block, so qkv_proj and gate_up_proj are
    dequantized at load; o_proj and down_proj (whole tensors, a partial last block) stay stored."""
    quantized_dir, _ = write_prequantized(tiny_llama_dir, tmp_path, "fp8-block-straddling")
    with caplog.at_level(logging.INFO, logger="berth_runtime.models.prequantized"):
        layer = make_engine(quantized_dir).runner.model.layers[0]
    assert isinstance(layer.qkv_proj, torch.nn.Linear) and isinstance(layer.gate_up_proj, torch.nn.Linear)
    assert isinstance(layer.o_proj, WeightOnlyLinear) and layer.o_proj.scale.shape == (2, 2)
    assert isinstance(layer.down_proj, WeightOnlyLinear) and layer.down_proj.scale.shape == (2, 4)
    assert "gate_up_proj, qkv_proj kept float (dequantized at load)" in caplog.text


def test_a_gpu_without_e4m3_dequantizes_at_load(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quantized_dir, _ = write_prequantized(tiny_llama_dir, tmp_path, "fp8-block")
    monkeypatch.setattr(loader, "stores_fp8", lambda device: False)
    layer = make_engine(quantized_dir).runner.model.layers[0]
    assert all(isinstance(linear, torch.nn.Linear) for linear in (layer.qkv_proj, layer.down_proj))


def test_qwen2_moe_shared_expert_and_dense_mlp_are_held_as_stored(
    tiny_qwen2_moe_dir: Path, tmp_path: Path
) -> None:
    quantized_dir, float_dir = write_prequantized(tiny_qwen2_moe_dir, tmp_path, "fp8-block", LINEARS)
    model = make_engine(quantized_dir).runner.model
    moe, dense = model.layers[0].moe, model.layers[1]
    for linear in (moe.shared_gate_up_proj, moe.shared_down_proj, dense.gate_up_proj, dense.qkv_proj):
        assert isinstance(linear, WeightOnlyLinear) and linear.qweight.dtype == torch.float8_e4m3fn
    stored = load_file(str(quantized_dir / "model.safetensors"))
    up = "model.layers.0.mlp.shared_expert.up_proj"
    assert torch.equal(moe.shared_gate_up_proj.qweight[64:].float(), stored[f"{up}.weight"].float())
    assert torch.equal(moe.shared_gate_up_proj.scale[2:], stored[f"{up}.weight_scale_inv"].float())
    assert max_logit_difference(quantized_dir, decode_steps=3, reference_dir=float_dir) <= ATOL
