"""Mixture-of-experts experts kept as a pre-quantized checkpoint stores them (issue #18): the grouped
expert kernel, dequantizing FP8 and int4 experts in its inner loop, computes what the torch reference
computes (which itself equals the float reference on the dequantized weights, act-order included),
and tiny Mixtral / Qwen2-MoE checkpoints in FP8 (per tensor, channel or block), AWQ, GPTQ and
pack-quantized int4 load their experts
as stored and match transformers on the dequantized weights, and generate the reference path's
tokens with their stored experts on the kernel path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_reference import make_engine
from kernel_device import kernel_device
from model_family_checks import (
    ATOL,
    assert_kernel_path_matches_the_reference_path,
    max_logit_difference,
)
from test_model_family_prequantized import LINEARS, write_prequantized

from berth_runtime.kernels import fused_moe as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.expert_weights import ExpertWeights
from berth_runtime.kernels.fused_moe import fused_experts
from berth_runtime.quantization.experts import QuantizedExperts

pytest_plugins = ["moe_checkpoints"]

EXPERTS, TOP_K, HIDDEN, INTERMEDIATE, GROUP = 4, 2, 64, 32, 32


@pytest.fixture
def device() -> str:
    return kernel_device(module._grouped_matmul_kernel)


def _routing(tokens: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities = torch.softmax(torch.randn(tokens, EXPERTS, generator=generator), dim=-1)
    weights, expert_ids = torch.topk(probabilities, TOP_K, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), expert_ids


def _int4_experts(out: int, inputs: int, act_order: bool, generator: torch.Generator) -> ExpertWeights:
    """Random nibbles, zeros and fp16 scales in berth's int4 layout; a random input order per expert."""
    groups = inputs // GROUP
    weight = torch.randint(-(2**31), 2**31 - 1, (EXPERTS, out, inputs // 8), generator=generator).int()
    scale = (torch.rand(EXPERTS, out, groups, generator=generator) / 20 + 0.01).half()
    zero = torch.randint(0, 16, (EXPERTS, out, groups), generator=generator).to(torch.uint8)
    order = None
    if act_order:
        order = torch.stack([torch.randperm(inputs, generator=generator) for _ in range(EXPERTS)]).int()
    return ExpertWeights(weight, scale, zero, order)


def _fp8_experts(out: int, inputs: int, per_channel: bool, generator: torch.Generator) -> ExpertWeights:
    weight = (
        (torch.randn(EXPERTS, out, inputs, generator=generator) * 100)
        .clamp(-448, 448)
        .to(torch.float8_e4m3fn)
    )
    scale = torch.rand(EXPERTS, out if per_channel else 1, generator=generator) / 500 + 1e-4
    return ExpertWeights(weight, scale.expand(EXPERTS, out).contiguous())  # per tensor: one per row


def _fp8_block_experts(out: int, inputs: int, generator: torch.Generator) -> ExpertWeights:
    """Block-wise FP8, blocks of 32 rows x 48 columns (partial blocks at the edges of `inputs`)."""
    weight = (torch.randn(EXPERTS, out, inputs, generator=generator) * 100).clamp(-448, 448)
    scale = torch.rand(EXPERTS, -(-out // 32), -(-inputs // 48), generator=generator) / 500 + 1e-4
    return ExpertWeights(weight.to(torch.float8_e4m3fn), scale, block_size=(32, 48))


def _dequantized(experts: ExpertWeights) -> torch.Tensor:
    """The float [experts, out, in] weights, in the checkpoint's input order, by the linears' references."""
    rows = []
    for expert in range(experts.num_experts):
        assert experts.scale is not None
        if experts.block_size is not None:
            scale = experts.scale[expert]
            rows.append(
                torch_reference.dequantize_fp8_blocks(experts.weight[expert], scale, experts.block_size)
            )
            continue
        if experts.zero is None:
            rows.append(experts.weight[expert].float() * experts.scale[expert, :, None])
            continue
        sorted_weight = torch_reference.dequantize_int4(
            experts.weight[expert], experts.scale[expert], experts.zero[expert]
        )
        weight = torch.empty_like(sorted_weight)
        order = experts.input_order
        weight[:, order[expert].long() if order is not None else slice(None)] = sorted_weight
        rows.append(weight)
    return torch.stack(rows)


def _to(experts: ExpertWeights, device: str) -> ExpertWeights:
    moved = [None if t is None else t.to(device) for t in (experts.scale, experts.zero, experts.input_order)]
    return ExpertWeights(experts.weight.to(device), *moved, experts.block_size)


SCHEMES = {
    "int4": lambda out, inputs, g: _int4_experts(out, inputs, False, g),
    "int4-act-order": lambda out, inputs, g: _int4_experts(out, inputs, True, g),
    "fp8-channel": lambda out, inputs, g: _fp8_experts(out, inputs, True, g),
    "fp8-tensor": lambda out, inputs, g: _fp8_experts(out, inputs, False, g),
    "fp8-block": _fp8_block_experts,
}


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(("tokens", "dtype"), [(1, torch.float32), (5, torch.bfloat16), (37, torch.float32)])
def test_stored_experts_kernel_matches_the_reference(
    device: str, scheme: str, tokens: int, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(tokens)
    gate_up = SCHEMES[scheme](2 * INTERMEDIATE, HIDDEN, generator)
    down = SCHEMES[scheme](HIDDEN, INTERMEDIATE, generator)
    hidden = torch.randn(tokens, HIDDEN, generator=generator).to(dtype)
    weights, expert_ids = _routing(tokens, generator)
    # in float32, the reference on stored experts is the float reference on their dequantized weights
    floats = [_dequantized(experts) for experts in (gate_up, down)]
    torch.testing.assert_close(
        torch_reference.grouped_experts(hidden.float(), gate_up, down, weights, expert_ids),
        torch_reference.grouped_experts(hidden.float(), *floats, weights, expert_ids),
        rtol=1e-5,
        atol=1e-5,
    )
    expected = torch_reference.grouped_experts(hidden, gate_up, down, weights, expert_ids)
    actual = fused_experts(
        hidden.to(device),
        _to(gate_up, device),
        _to(down, device),
        weights.to(device),
        expert_ids.to(device),
        torch_reference.silu_and_mul,
    )
    assert actual.dtype == dtype and actual.shape == hidden.shape
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(actual.cpu(), expected, rtol=tolerance, atol=tolerance)


def test_wrapper_names_a_bad_stored_expert(device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    gate_up = _to(_int4_experts(2 * INTERMEDIATE, HIDDEN, False, generator), device)
    down = _to(_int4_experts(HIDDEN, INTERMEDIATE, False, generator), device)
    weights, expert_ids = _routing(2, generator)
    bad = ExpertWeights(gate_up.weight, gate_up.scale, gate_up.zero[:, :, :1].contiguous())
    with pytest.raises(ValueError, match=r"gate_up.zero has shape \[4, 64, 1\]; expected \[4, 64, 2\]"):
        fused_experts(torch.zeros(2, HIDDEN, device=device), bad, down, weights.to(device),
                      expert_ids.to(device), torch_reference.silu_and_mul)  # fmt: skip


def test_experts_whose_gate_and_up_orders_differ_are_refused() -> None:
    experts = QuantizedExperts(2, 8, 32, torch.device("cpu"), group_size=16, shards=2)
    experts.input_permutation.copy_(torch.arange(32, dtype=torch.int32).expand(2, 2, 32))
    assert experts.expert_weights().input_order is None  # identity orders: no gather
    experts = QuantizedExperts(2, 8, 32, torch.device("cpu"), group_size=16, shards=2)
    experts.input_permutation.copy_(torch.arange(32, dtype=torch.int32).expand(2, 2, 32))
    experts.input_permutation[1, 1] = experts.input_permutation[1, 1].flip(0)
    with pytest.raises(ValueError, match="order their inputs differently"):
        experts.expert_weights()


STORED = {"fp8": torch.float8_e4m3fn, "awq": torch.int32, "gptq": torch.int32, "int4-pack": torch.int32}


@pytest.mark.parametrize(
    ("family", "scheme"),
    [
        ("tiny_mixtral_dir", "awq"),
        ("tiny_mixtral_dir", "gptq"),
        ("tiny_mixtral_dir", "fp8-channel"),
        ("tiny_mixtral_dir", "fp8-block"),
        ("tiny_mixtral_dir", "int4-pack-asymmetric-actorder"),
        ("tiny_qwen2_moe_dir", "fp8-tensor"),
        ("tiny_qwen2_moe_dir", "int4-pack"),
    ],
)
def test_prequantized_experts_load_as_stored_and_match_transformers(
    family: str, scheme: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = request.getfixturevalue(family)
    quantized_dir, float_dir = write_prequantized(source, tmp_path, scheme, (*LINEARS, "w1", "w2", "w3"))
    moe = make_engine(quantized_dir).runner.model.layers[0].moe
    stored = STORED["fp8" if scheme.startswith("fp8") else scheme.split("-actorder")[0].split("-asym")[0]]
    for experts in (moe.experts_gate_up, moe.experts_down):
        assert isinstance(experts, QuantizedExperts) and experts.weight.dtype == stored
    act_order = scheme in ("gptq", "int4-pack-asymmetric-actorder")
    assert (moe.experts_gate_up.expert_weights().input_order is not None) == act_order
    assert max_logit_difference(quantized_dir, decode_steps=3, reference_dir=float_dir) <= ATOL


@pytest.mark.parametrize("scheme", ["gptq", "fp8-channel", "fp8-block"])
def test_stored_experts_on_the_kernel_path_give_the_reference_tokens(
    tiny_mixtral_dir: Path, tmp_path: Path, scheme: str
) -> None:
    """The grouped kernel reads the stored experts (act-order int4, FP8) through the ops table; decode
    graphs stay allowed (the input order is read back once, on the first eager pass)."""
    quantized_dir, _ = write_prequantized(tiny_mixtral_dir, tmp_path, scheme, (*LINEARS, "w1", "w2", "w3"))
    assert_kernel_path_matches_the_reference_path(quantized_dir, decode_graphs=True)


def test_experts_the_kernel_cannot_take_as_stored_stay_float() -> None:
    """FP8 blocks that split gate from up inside one row block keep the float experts (dequantized
    at load); blocks that fit are held as stored."""
    from berth_runtime.models.model_config import MixtureOfExperts
    from berth_runtime.models.moe import SparseMoE

    settings = MixtureOfExperts(4, 2, 48, normalize_top_k=True, sparse_layers=(True,))
    moe = SparseMoE(64, settings, torch.float32)
    moe.store_experts_as_fp8((32, 32))  # 48 gate rows: not whole blocks of 32
    assert isinstance(moe.experts_gate_up, torch.nn.Parameter)
    moe.store_experts_as_fp8((16, 32))
    assert isinstance(moe.experts_gate_up, QuantizedExperts) and moe.experts_gate_up.scale.shape == (4, 6, 2)
