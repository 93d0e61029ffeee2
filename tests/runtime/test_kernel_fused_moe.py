"""The fused expert path (one grouped launch per projection over all experts) computes what the torch
reference's per-expert loop computes, for decode-sized and prefill-sized steps, and its alignment puts
every (token, expert) pair exactly once in a block of its own expert without reading anything back
to the host."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import fused_moe as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.expert_weights import ExpertWeights
from berth_runtime.kernels.fused_moe import align_pairs_by_expert, fused_experts


@pytest.fixture
def device() -> str:
    return kernel_device(module._grouped_matmul_kernel)


def _routing(tokens: int, experts: int, top_k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    probabilities = torch.softmax(torch.randn(tokens, experts, generator=generator), dim=-1)
    weights, expert_ids = torch.topk(probabilities, top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), expert_ids


def test_alignment_places_each_pair_once_in_its_experts_blocks() -> None:
    _, expert_ids = _routing(23, 6, 2, seed=1)
    pair_ids, block_experts = align_pairs_by_expert(expert_ids, 6, 16)
    flat = expert_ids.flatten()
    real = pair_ids[pair_ids < flat.numel()].long()
    assert sorted(real.tolist()) == list(range(flat.numel()))
    for block, expert in enumerate(block_experts.tolist()):
        pairs = pair_ids[block * 16 : (block + 1) * 16].long()
        pairs = pairs[pairs < flat.numel()]
        if expert == 6:  # past the padded end
            assert pairs.numel() == 0
        else:
            assert torch.all(flat[pairs] == expert)
    used = {int(e) for e in flat}
    assert set(block_experts.tolist()) - {6} == used  # no block for an expert no token chose


@pytest.mark.parametrize(("tokens", "dtype"), [(1, torch.float32), (5, torch.bfloat16), (37, torch.float32)])
def test_fused_experts_match_the_grouped_reference(device: str, tokens: int, dtype: torch.dtype) -> None:
    experts, top_k, hidden_size, intermediate = 8, 2, 32, 48
    generator = torch.Generator().manual_seed(tokens)
    hidden = torch.randn(tokens, hidden_size, generator=generator).to(device, dtype)
    gate_up = (torch.randn(experts, 2 * intermediate, hidden_size, generator=generator) / 6).to(device, dtype)
    down = (torch.randn(experts, hidden_size, intermediate, generator=generator) / 7).to(device, dtype)
    weights, expert_ids = _routing(tokens, experts, top_k, seed=tokens)
    weights, expert_ids = weights.to(device), expert_ids.to(device)
    actual = fused_experts(hidden, gate_up, down, weights, expert_ids, torch_reference.silu_and_mul)
    expected = torch_reference.grouped_experts(hidden, gate_up, down, weights, expert_ids)
    assert actual.dtype == dtype and actual.shape == hidden.shape
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


def test_wrapper_names_what_is_wrong(device: str) -> None:
    hidden = torch.zeros(2, 32, device=device)
    gate_up = torch.zeros(4, 96, 32, device=device)
    weights, expert_ids = _routing(2, 4, 2, seed=0)
    with pytest.raises(ValueError, match=r"down has shape \[4, 32, 40\]; expected \[4, 32, 48\]"):
        fused_experts(hidden, gate_up, torch.zeros(4, 32, 40, device=device), weights.to(device),
                      expert_ids.to(device), torch_reference.silu_and_mul)  # fmt: skip


def test_wrapper_names_the_stored_part_and_the_block_size_at_fault(device: str) -> None:
    """A stored expert's part is named (gate_up.scale, not gate_up), and FP8 blocks of zero rows or
    columns are refused by name instead of dividing by zero."""
    hidden = torch.zeros(2, 32, device=device)
    weights, expert_ids = _routing(2, 4, 2, seed=0)
    route = (weights.to(device), expert_ids.to(device), torch_reference.silu_and_mul)
    down = torch.zeros(4, 32, 48, device=device)
    gate_up = ExpertWeights(
        torch.zeros(4, 96, 4, dtype=torch.int32, device=device),
        torch.ones(4, 2, 96, dtype=torch.float16, device=device).transpose(1, 2),  # not contiguous
        torch.zeros(4, 96, 2, dtype=torch.uint8, device=device),
    )
    with pytest.raises(ValueError, match=r"gate_up.scale must be contiguous"):
        fused_experts(hidden, gate_up, down, *route)
    fp8 = torch.zeros(4, 96, 32, device=device).to(torch.float8_e4m3fn)
    for block_size in ((0, 16), (16, 0)):
        blocks = ExpertWeights(fp8, torch.ones(4, 1, 1, device=device), block_size=block_size)
        with pytest.raises(ValueError, match=rf"gate_up.block_size \({block_size[0]}, {block_size[1]}\)"):
            fused_experts(hidden, blocks, down, *route)


def test_wrapper_refuses_routing_on_another_device(device: str) -> None:
    """The pair ids are built on expert_ids' device and the router weights read by the kernel: both
    must be where the hidden states and experts are, or the launch reads another device's memory."""
    hidden = torch.zeros(2, 32, device=device)
    weights, expert_ids = _routing(2, 4, 2, seed=0)
    gate_up, down = torch.zeros(4, 96, 32, device=device), torch.zeros(4, 32, 48, device=device)
    with pytest.raises(ValueError, match=r"one device, got .*expert_ids on meta"):
        fused_experts(hidden, gate_up, down, weights.to(device), expert_ids.to("meta"),
                      torch_reference.silu_and_mul)  # fmt: skip
    with pytest.raises(ValueError, match=r"one device, got .*router_weights on meta"):
        fused_experts(hidden, gate_up, down, weights.to("meta"), expert_ids.to(device),
                      torch_reference.silu_and_mul)  # fmt: skip
