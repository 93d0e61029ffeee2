"""On CUDA (compiled, not interpreted): mixture-of-experts experts kept as a pre-quantized checkpoint
stores them (issue #18), dequantized in the grouped kernel's inner loop, against the torch reference
in bf16 at a Mixtral-like ratio of shapes: int4 group 128 with per-expert act-order (held by
`QuantizedExperts`, filled on the CPU and moved to the GPU, so its input order is re-read there), and
FP8 e4m3 with a scale per row or per 128 x 128 block (compute capability >= 8.9 only)."""

from __future__ import annotations

import pytest
import torch

from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.expert_weights import ExpertWeights
from berth_runtime.kernels.fused_moe import fused_experts
from berth_runtime.quantization.experts import QuantizedExperts

EXPERTS, TOP_K, HIDDEN, INTERMEDIATE = 8, 2, 1024, 2048


def _routing(tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities = torch.softmax(torch.randn(tokens, EXPERTS, device="cuda"), -1)
    weights, expert_ids = torch.topk(probabilities, TOP_K)
    return weights, expert_ids


def _int4_experts(out_features: int, in_features: int, shards: int) -> QuantizedExperts:
    generator = torch.Generator().manual_seed(out_features)
    experts = QuantizedExperts(EXPERTS, out_features, in_features, torch.device("cpu"), 128, shards)
    experts.weight.copy_(torch.randint(-(2**31), 2**31 - 1, experts.weight.shape, generator=generator))
    experts.scale.copy_(torch.rand(experts.scale.shape, generator=generator) * 0.004)
    assert experts.zero is not None and experts.input_permutation is not None
    experts.zero.copy_(torch.randint(0, 16, experts.zero.shape, generator=generator))
    orders = torch.stack([torch.randperm(in_features, generator=generator) for _ in range(EXPERTS)])
    experts.input_permutation.copy_(orders[:, None, :].expand(-1, shards, -1))
    return experts


@pytest.mark.parametrize("tokens", [1, 7, 200])
def test_act_order_int4_experts_match_reference_in_bf16(tokens: int) -> None:
    gate_up, down = _int4_experts(2 * INTERMEDIATE, HIDDEN, 2), _int4_experts(HIDDEN, INTERMEDIATE, 1)
    x = torch.randn(tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)
    weights, expert_ids = _routing(tokens)
    on_cpu = [experts.expert_weights() for experts in (gate_up, down)]
    expected = torch_reference.grouped_experts(x.cpu(), *on_cpu, weights.cpu(), expert_ids.cpu())
    on_gpu = [experts.cuda().expert_weights() for experts in (gate_up, down)]
    assert all(w.input_order is not None and w.input_order.is_cuda for w in on_gpu)
    actual = fused_experts(x, *on_gpu, weights, expert_ids, torch_reference.silu_and_mul)
    torch.testing.assert_close(actual.cpu(), expected, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("blocks", [None, (128, 128)])
@pytest.mark.parametrize("tokens", [1, 7, 200])
def test_fp8_experts_match_reference_in_bf16(tokens: int, blocks: tuple[int, int] | None) -> None:
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 e4m3 needs compute capability >= 8.9 (FP8 experts are dequantized below it)")

    def fp8(out_features: int, in_features: int) -> ExpertWeights:
        weight = torch.randn(EXPERTS, out_features, in_features, device="cuda") * 100
        weight = weight.clamp(-448, 448).to(torch.float8_e4m3fn)  # e4m3's range
        if blocks is None:
            return ExpertWeights(weight, torch.rand(EXPERTS, out_features, device="cuda") * 3e-4)
        scale_shape = (EXPERTS, out_features // blocks[0], in_features // blocks[1])
        return ExpertWeights(weight, torch.rand(*scale_shape, device="cuda") * 3e-4, block_size=blocks)

    gate_up, down = fp8(2 * INTERMEDIATE, HIDDEN), fp8(HIDDEN, INTERMEDIATE)
    x = torch.randn(tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)
    weights, expert_ids = _routing(tokens)
    expected = torch_reference.grouped_experts(x, gate_up, down, weights, expert_ids)
    actual = fused_experts(x, gate_up, down, weights, expert_ids, torch_reference.silu_and_mul)
    torch.testing.assert_close(actual, expected, rtol=3e-2, atol=3e-2)
