"""Fused rotary + KV store equals the torch reference: rotating with Hugging Face's arithmetic, then
storing; a padding row (slot -1) stores nothing."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import rotary_kv_store as module
from berth_runtime.kernels.rotary_kv_store import rotary_and_store_kv
from tests.kernel_expectations import expected_rotary_and_store


@pytest.fixture
def device() -> str:
    return kernel_device(module._rotary_store_kv_kernel)


def _tables(head_dim: int, max_positions: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device), emb.sin().to(device)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fused_matches_rotate_then_store(device: str, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(11)
    tokens, heads, kv_heads, head_dim = 5, 4, 2, 16
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, generator=generator).to(device, dtype)
    query = qkv[:, : heads * head_dim].view(tokens, heads, head_dim)
    key = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim)
    value = qkv[:, (heads + kv_heads) * head_dim :].view(tokens, kv_heads, head_dim)
    cos, sin = _tables(head_dim, 32, device)
    positions = torch.tensor([0, 3, 7, 30, 31], device=device)
    slots = torch.tensor([4, 0, -1, 11, 9], device=device)
    key_cache = torch.randn(4, 4, kv_heads, head_dim, generator=generator).to(device, dtype)
    value_cache = torch.randn(4, 4, kv_heads, head_dim, generator=generator).to(device, dtype)
    expected = expected_rotary_and_store(
        query, key, value, positions, cos, sin, key_cache, value_cache, slots
    )
    stored, expected_query = expected.stored, expected.query
    expected_keys, expected_values = expected.key_cache, expected.value_cache
    original_key = key.clone()
    rotary_and_store_kv(query, key, value, positions, cos, sin, key_cache, value_cache, slots)
    if dtype == torch.float32:
        torch.testing.assert_close(query[stored], expected_query, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(key_cache, expected_keys, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(query[stored], expected_query)
        assert torch.equal(key_cache, expected_keys)
    assert torch.equal(value_cache, expected_values)
    assert torch.equal(key, original_key)  # the rotated keys went to the cache only
    # slot 0 holds token 1's key rotated by position 3 (equal to the reference above, rounding
    # included), not its unrotated key
    assert not torch.allclose(key_cache[0, 0], original_key[1], rtol=1e-3, atol=1e-3)


def test_partial_rotation_and_bad_layouts_are_rejected(device: str) -> None:
    query = torch.randn(2, 4, 16, device=device)
    key = torch.randn(2, 2, 16, device=device)
    cos, sin = _tables(8, 8, device)  # rotary_dim 8 < head_dim 16
    cache = torch.zeros(2, 4, 2, 16, device=device)
    positions = torch.tensor([0, 1], device=device)
    with pytest.raises(ValueError, match=r"cos_table has shape \[8, 8\]; expected \[\*, 16\]"):
        rotary_and_store_kv(query, key, key, positions, cos, sin, cache, cache.clone(), positions)
    full_cos, full_sin = _tables(16, 8, device)
    with pytest.raises(ValueError, match=r"key has shape \[2, 3, 16\]; expected \[2, 2, 16\]"):
        bad_key = torch.randn(2, 3, 16, device=device)
        rotary_and_store_kv(
            query, bad_key, key, positions, full_cos, full_sin, cache, cache.clone(), positions
        )
