"""Pre-quantized checkpoints (FP8 per-tensor and per-channel in compressed-tensors' layout, FP8
block-wise as transformers' "fp8", AWQ 4-bit GEMM, GPTQ 4-bit with act-order g_idx), written here to
each format's documented on-disk layout from a tiny Llama: berth dequantizes every weight exactly as
the quantization defined it, its logits equal transformers' on a float checkpoint of those
dequantized weights (fp32), and a quantization_config it cannot load, or --quantization on top of
one, fails with what is accepted."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from engine_reference import make_engine
from model_family_checks import ATOL, PROMPT, max_logit_difference, prefill_logits
from safetensors.torch import load_file, save_file

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.models.model_config import ModelDirectoryError, load_model_config
from berth_runtime.quantization import WeightOnlyLinear

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GROUP = 32
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
Quantizer = Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], torch.Tensor]]
"""weight [out, in] -> (the stored tensors by suffix, the weight they dequantize to)."""


def _pack(values: torch.Tensor, dim: int, order: tuple[int, ...] = tuple(range(8))) -> torch.Tensor:
    """Eight 4-bit values per int32 along `dim`, nibble j holding element order[j] of each eight."""
    values = values.to(torch.int64)
    if dim == 0:
        return _pack(values.t(), 1, order).t().contiguous()
    grouped = values.view(values.shape[0], -1, 8)
    packed = sum(grouped[:, :, order[j]] << (4 * j) for j in range(8))
    return packed.to(torch.int32).contiguous()  # wraps to the signed int32 the formats store


def _fp8(per_channel: bool) -> Quantizer:
    def quantize(weight: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        amax = weight.abs().amax(dim=1, keepdim=True) if per_channel else weight.abs().amax().view(1)
        scale = amax / 448.0
        stored = (weight / scale).to(torch.float8_e4m3fn)
        return {"weight": stored, "weight_scale": scale}, stored.float() * scale

    return quantize


def _fp8_blocks(rows: int, columns: int) -> Quantizer:
    """One scale per block of rows x columns (edge blocks partial where the shape is not a multiple)."""

    def quantize(weight: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        blocks = -(-weight.shape[0] // rows), -(-weight.shape[1] // columns)
        scale_inv = torch.stack([
            torch.stack([weight[r * rows : (r + 1) * rows, c * columns : (c + 1) * columns].abs().amax()
                         for c in range(blocks[1])])
            for r in range(blocks[0])
        ]) / 448.0  # fmt: skip
        expanded = scale_inv.repeat_interleave(rows, 0).repeat_interleave(columns, 1)
        expanded = expanded[: weight.shape[0], : weight.shape[1]]
        stored = (weight / expanded).to(torch.float8_e4m3fn)
        return {"weight": stored, "weight_scale_inv": scale_inv}, stored.float() * expanded

    return quantize


def _asymmetric_groups(weight_in_out: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per (group, output) min/max 4-bit quantization of [in, out] -> (q, zeros, scales) with zeros
    and scales [groups, out] (scales rounded to fp16, as stored)."""
    count = int(groups.max()) + 1
    low = torch.stack([weight_in_out[groups == g].amin(0) for g in range(count)])
    high = torch.stack([weight_in_out[groups == g].amax(0) for g in range(count)])
    scales = ((high - low) / 15).clamp(min=1e-8).half()
    zeros = torch.round(-low / scales.float()).clamp(0, 15)
    q = torch.clamp(torch.round(weight_in_out / scales.float()[groups]) + zeros[groups], 0, 15)
    return q, zeros, scales


def _awq(weight: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    groups = torch.arange(weight.shape[1]) // GROUP
    q, zeros, scales = _asymmetric_groups(weight.t(), groups)
    dequantized = ((q - zeros[groups]) * scales.float()[groups]).t()
    stored = {"qweight": _pack(q, 1, AWQ_ORDER), "qzeros": _pack(zeros, 1, AWQ_ORDER), "scales": scales}
    return stored, dequantized


def _gptq(weight: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Symmetric (zero 8, stored as 7), act-order: a permuted group index per input."""
    inputs = weight.shape[1]
    groups = torch.randperm(inputs, generator=torch.Generator().manual_seed(inputs)) // GROUP
    count = inputs // GROUP
    scales = torch.stack([weight.t()[groups == g].abs().amax(0) for g in range(count)]) / 7
    scales = scales.clamp(min=1e-8).half()
    q = torch.clamp(torch.round(weight.t() / scales.float()[groups]) + 8, 0, 15)
    dequantized = ((q - 8) * scales.float()[groups]).t()
    zeros = torch.full((count, weight.shape[0]), 7)
    stored = {"qweight": _pack(q, 0), "qzeros": _pack(zeros, 1), "scales": scales, "g_idx": groups.int()}
    return stored, dequantized


def _pack_quantized(symmetric: bool, act_order: bool) -> Quantizer:
    """compressed-tensors pack-quantized, group 32: signed 4-bit values stored plus 8, packed along the
    input; asymmetric zero points likewise, packed along the output; group act-order's g_idx."""

    def quantize(weight: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        outputs, inputs = weight.shape
        groups = torch.arange(inputs) // GROUP
        if act_order:
            groups = groups[torch.randperm(inputs, generator=torch.Generator().manual_seed(inputs))]
        if symmetric:
            scales = (
                torch.stack([weight[:, groups == g].abs().amax(1) for g in range(inputs // GROUP)], 1) / 7
            )
            scales, zeros = scales.clamp(min=1e-8).to(torch.bfloat16), torch.zeros(outputs, inputs // GROUP)
        else:
            _, zeros_unsigned, scales = _asymmetric_groups(weight.t(), groups)
            scales, zeros = scales.t().to(torch.bfloat16).contiguous(), zeros_unsigned.t() - 8  # signed
        q = torch.clamp(torch.round(weight / scales.float()[:, groups]) + zeros[:, groups], -8, 7)
        dequantized = (q - zeros[:, groups]) * scales.float()[:, groups]
        stored = {
            "weight_packed": _pack(q + 8, 1),
            "weight_scale": scales,
            "weight_shape": torch.tensor([outputs, inputs]),
        }
        if not symmetric:
            stored["weight_zero_point"] = _pack(zeros + 8, 0)
        if act_order:
            stored["weight_g_idx"] = groups.int()
        return stored, dequantized

    return quantize


def _compressed_tensors_int4(symmetric: bool, act_order: bool) -> dict[str, object]:
    weights = {"num_bits": 4, "type": "int", "strategy": "group", "group_size": GROUP, "symmetric": symmetric}
    weights["actorder"] = "group" if act_order else None
    return {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
        "ignore": ["lm_head"],
    }


def _compressed_tensors_fp8(strategy: str) -> dict[str, object]:
    weights = {"num_bits": 8, "type": "float", "strategy": strategy, "symmetric": True}
    return {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
    }


QUANTIZATION_CONFIGS = {
    "fp8-tensor": _compressed_tensors_fp8("tensor"),
    "fp8-channel": _compressed_tensors_fp8("channel"),
    "fp8-block": {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [32, 48]},
    "fp8-block-even": {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [32, 32]},
    # 48-row blocks straddle q/k and gate/up: those fused linears stay float, o and down stay stored
    "fp8-block-straddling": {
        "quant_method": "fp8",
        "activation_scheme": "dynamic",
        "weight_block_size": [48, 32],
    },
    "awq": {"quant_method": "awq", "bits": 4, "group_size": GROUP, "version": "gemm", "zero_point": True},
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": True, "sym": True},
    "int4-pack": _compressed_tensors_int4(symmetric=True, act_order=False),
    "int4-pack-asymmetric": _compressed_tensors_int4(symmetric=False, act_order=False),
    "int4-pack-asymmetric-actorder": _compressed_tensors_int4(symmetric=False, act_order=True),
}
QUANTIZERS: dict[str, Quantizer] = {
    "fp8-tensor": _fp8(per_channel=False),
    "fp8-channel": _fp8(per_channel=True),
    "fp8-block": _fp8_blocks(32, 48),
    "fp8-block-even": _fp8_blocks(32, 32),
    "fp8-block-straddling": _fp8_blocks(48, 32),
    "awq": _awq,
    "gptq": _gptq,
    "int4-pack": _pack_quantized(symmetric=True, act_order=False),
    "int4-pack-asymmetric": _pack_quantized(symmetric=False, act_order=False),
    "int4-pack-asymmetric-actorder": _pack_quantized(symmetric=False, act_order=True),
}


def write_prequantized(
    source: Path, directory: Path, scheme: str, linears: tuple[str, ...] = LINEARS
) -> tuple[Path, Path]:
    """(the quantized checkpoint, a float checkpoint of its dequantized weights) from `source`, every
    weight of a module named in `linears` quantized."""
    quantized_dir, float_dir = directory / "quantized", directory / "dequantized"
    for target in (quantized_dir, float_dir):
        shutil.copytree(source, target)
    tensors = load_file(str(source / "model.safetensors"))
    quantized, dequantized = dict(tensors), dict(tensors)
    for name, weight in tensors.items():
        module = name.removesuffix(".weight")
        if not (name.endswith(".weight") and module.rpartition(".")[2] in linears):
            continue
        stored, dequantized_weight = QUANTIZERS[scheme](weight)
        dequantized[name] = dequantized_weight.contiguous()
        del quantized[name]
        quantized.update({f"{module}.{suffix}": tensor for suffix, tensor in stored.items()})
    save_file(quantized, str(quantized_dir / "model.safetensors"))
    save_file(dequantized, str(float_dir / "model.safetensors"))
    config = json.loads((source / "config.json").read_text())
    config["quantization_config"] = QUANTIZATION_CONFIGS[scheme]
    (quantized_dir / "config.json").write_text(json.dumps(config))
    return quantized_dir, float_dir


@pytest.mark.parametrize("scheme", list(QUANTIZERS))
def test_prequantized_checkpoint_matches_transformers_on_its_dequantized_weights(
    tiny_llama_dir: Path, tmp_path: Path, scheme: str
) -> None:
    quantized_dir, float_dir = write_prequantized(tiny_llama_dir, tmp_path, scheme)
    assert load_model_config(quantized_dir).prequantization is not None
    assert max_logit_difference(quantized_dir, decode_steps=4, reference_dir=float_dir) <= ATOL


@pytest.mark.parametrize("scheme", ["fp8-tensor", "fp8-channel"])
def test_fp8_weights_are_served_as_stored(tiny_llama_dir: Path, tmp_path: Path, scheme: str) -> None:
    """Every decoder linear holds the checkpoint's own float8 values and one scale per output row."""
    quantized_dir, _ = write_prequantized(tiny_llama_dir, tmp_path, scheme)
    model = make_engine(quantized_dir).runner.model
    layer = model.layers[1]
    assert isinstance(layer.qkv_proj, WeightOnlyLinear) and isinstance(layer.down_proj, WeightOnlyLinear)
    stored = load_file(str(quantized_dir / "model.safetensors"))
    k_rows = slice(64, 96)  # q: 4 heads x 16, then k: 2 heads x 16
    assert layer.qkv_proj.qweight.dtype == torch.float8_e4m3fn
    assert torch.equal(
        layer.qkv_proj.qweight[k_rows].float(), stored["model.layers.1.self_attn.k_proj.weight"].float()
    )
    expected_scale = stored["model.layers.1.self_attn.k_proj.weight_scale"].float().reshape(-1).expand(32)
    torch.testing.assert_close(layer.qkv_proj.scale[k_rows], expected_scale, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("quantization_config", "message"),
    [
        ({"quant_method": "bitsandbytes"}, "quant_method 'bitsandbytes'"),
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}, "version='gemv'"),
        ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "bits=8"),
        ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "weight_block_size=None"),
        (
            {"quant_method": "compressed-tensors", "format": "pack-quantized"},
            "'pack-quantized' with 0 weight",
        ),
        ({"quant_method": "compressed-tensors", "format": "marlin-24"}, "'marlin-24'"),
    ],
)
def test_an_unsupported_quantization_config_fails_naming_the_accepted_ones(
    tiny_llama_dir: Path, tmp_path: Path, quantization_config: dict[str, object], message: str
) -> None:
    model_dir = shutil.copytree(tiny_llama_dir, tmp_path / "model")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "quantization_config": quantization_config}))
    with pytest.raises(ModelDirectoryError, match=f"{message}.*accepted: compressed-tensors"):
        load_model_config(model_dir)


def test_quantizing_a_prequantized_checkpoint_again_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    quantized_dir, _ = write_prequantized(tiny_llama_dir, tmp_path, "awq")
    config = RuntimeConfig(model=str(quantized_dir), dtype="float32", device="cpu", quantization="int8")
    with pytest.raises(ValueError, match=r"already quantized \(awq.*accepted: --quantization none"):
        build_engine(config)


@pytest.mark.parametrize("scheme", ["fp8-tensor", "fp8-channel"])
def test_fp8_layout_is_the_one_compressed_tensors_reads(
    tiny_llama_dir: Path, tmp_path: Path, scheme: str
) -> None:
    """The library's own dequantization (transformers with compressed-tensors) of the FP8 checkpoint
    written here gives the same logits as berth's."""
    pytest.importorskip("compressed_tensors", reason="compressed-tensors is not installed")
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    quantized_dir, _ = write_prequantized(tiny_llama_dir, tmp_path, scheme)
    library = AutoModelForCausalLM.from_pretrained(
        quantized_dir, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    )
    with torch.no_grad():
        expected = library.eval()(torch.tensor([PROMPT])).logits[0, -1]
    torch.testing.assert_close(prefill_logits(quantized_dir), expected, atol=ATOL, rtol=0)


def test_block_fp8_layout_is_the_one_transformers_reads(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """transformers' own dequantization of the block-wise FP8 checkpoint written here (its dequantizer
    takes whole blocks only) gives berth's logits."""
    from transformers import AutoModelForCausalLM, FineGrainedFP8Config

    quantized_dir, _ = write_prequantized(tiny_llama_dir, tmp_path, "fp8-block-even")
    library = AutoModelForCausalLM.from_pretrained(
        quantized_dir, dtype=torch.float32, quantization_config=FineGrainedFP8Config(dequantize=True)
    )
    with torch.no_grad():
        expected = library.eval()(torch.tensor([PROMPT])).logits[0, -1]
    torch.testing.assert_close(prefill_logits(quantized_dir), expected, atol=ATOL, rtol=0)


def test_pack_quantized_layout_is_the_one_compressed_tensors_writes() -> None:
    """The library's own packing of signed 4-bit weights (along the input) and zero points (along the
    output) gives the words the int4-pack checkpoints here are written with."""
    helpers = pytest.importorskip(
        "compressed_tensors.compressors.pack_quantized.helpers", reason="compressed-tensors is not installed"
    )
    values = torch.randint(-8, 8, (16, 64), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    assert torch.equal(helpers.pack_to_int32(values, 4), _pack(values.long() + 8, 1))
    assert torch.equal(helpers.pack_to_int32(values, 4, packed_dim=0), _pack(values.long() + 8, 0))


@pytest.mark.parametrize("scheme", ["int4-pack", "int4-pack-asymmetric"])
def test_int4_pack_layout_is_the_one_compressed_tensors_reads(
    tiny_llama_dir: Path, tmp_path: Path, scheme: str
) -> None:
    """The library's own dequantization of the pack-quantized checkpoint written here (it multiplies in
    the scales' bf16) equals the dequantized weights berth's logits are checked against, rounded to
    bf16, bit for bit. (Group act-order, `weight_g_idx`, is gone from compressed-tensors >= 0.20 and
    is checked against the dequantized weights only.)"""
    pytest.importorskip("compressed_tensors", reason="compressed-tensors is not installed")
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    quantized_dir, float_dir = write_prequantized(tiny_llama_dir, tmp_path, scheme)
    library = AutoModelForCausalLM.from_pretrained(
        quantized_dir, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    )
    weights = dict(library.named_parameters())
    dequantized = load_file(str(float_dir / "model.safetensors"))
    linears = [name for name in dequantized if name.removesuffix(".weight").rpartition(".")[2] in LINEARS]
    assert len(linears) == 14
    for name in linears:
        assert torch.equal(weights[name].float(), dequantized[name].to(torch.bfloat16).float()), name
