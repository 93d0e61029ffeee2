"""The rotary kernel rotates q and k in place exactly like the torch reference (Hugging Face's
``apply_rotary_pos_emb``), partial rotation included."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import rotary as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.rotary import apply_rotary_embedding


@pytest.fixture
def device() -> str:
    return kernel_device(module._rotary_kernel)


def _tables(rotary_dim: int, max_positions: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's rotate-half layout: both halves of each row are equal."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim))
    freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device), emb.sin().to(device)


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    if actual.device.type == "cpu" and actual.dtype != torch.float32:
        assert torch.equal(actual, expected)
    else:
        torch.testing.assert_close(actual, expected, rtol=2**-7, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_rotation_matches_reference_for_gqa_heads(device: str, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(3)
    cos, sin = _tables(16, 64, device)
    positions = torch.tensor([0, 1, 17, 63], device=device)
    qkv = torch.randn(4, (6 + 2 * 2) * 16, generator=generator).to(device, dtype)
    # query and key are strided views into one fused projection, as in the model
    query = qkv[:, : 6 * 16].view(4, 6, 16)
    key = qkv[:, 6 * 16 : 8 * 16].view(4, 2, 16)
    expected_query, expected_key = torch_reference.apply_rotary(query, key, positions, cos, sin)
    returned_query, returned_key = apply_rotary_embedding(query, key, positions, cos, sin)
    assert returned_query is query and returned_key is key
    _assert_same(query, expected_query)
    _assert_same(key, expected_key)


def test_position_zero_is_the_identity_and_others_rotate(device: str) -> None:
    cos, sin = _tables(8, 4, device)
    original = torch.randn(2, 1, 8, device=device)
    query, key = original.clone(), original.clone()
    apply_rotary_embedding(query, key, torch.tensor([0, 3], device=device), cos, sin)
    torch.testing.assert_close(query[0], original[0])
    assert not torch.allclose(query[1], original[1])
    torch.testing.assert_close(query[1].norm(), original[1].norm())  # a rotation keeps the length


def test_partial_rotary_leaves_the_tail_untouched(device: str) -> None:
    cos, sin = _tables(8, 16, device)
    query = torch.randn(3, 2, 16, device=device)
    key = torch.randn(3, 1, 16, device=device)
    positions = torch.tensor([1, 5, 9], device=device)
    expected_query, expected_key = torch_reference.apply_rotary(query, key, positions, cos, sin)
    tail = query[..., 8:].clone()
    apply_rotary_embedding(query, key, positions, cos, sin)
    _assert_same(query, expected_query)
    _assert_same(key, expected_key)
    assert torch.equal(query[..., 8:], tail)


def test_bad_arguments_are_rejected(device: str) -> None:
    cos, sin = _tables(16, 8, device)
    query = torch.randn(2, 4, 16, device=device)
    key = torch.randn(2, 2, 16, device=device)
    positions = torch.tensor([0, 1], device=device)
    with pytest.raises(ValueError, match=r"key has shape \[2, 2, 8\]; expected \[2, \*, 16\]"):
        apply_rotary_embedding(query, torch.randn(2, 2, 8, device=device), positions, cos, sin)
    with pytest.raises(ValueError, match="positions has dtype float32"):
        apply_rotary_embedding(query, key, positions.float(), cos, sin)
    with pytest.raises(ValueError, match="rotary_dim 32 must be even, at most head_dim 16"):
        big_cos, big_sin = _tables(32, 8, device)
        apply_rotary_embedding(query, key, positions, big_cos, big_sin)
    with pytest.raises(ValueError, match="cos_table has dtype bfloat16"):
        apply_rotary_embedding(query, key, positions, cos.bfloat16(), sin)
