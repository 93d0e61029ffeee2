"""The KV-cache store writes each token's key and value at its slot of the paged cache, and only there."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import kv_cache_store as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.kv_cache_store import store_kv_cache


@pytest.fixture
def device() -> str:
    return kernel_device(module._store_kv_kernel)


@pytest.mark.parametrize(("num_kv_heads", "head_dim"), [(2, 16), (3, 12)])
def test_store_matches_reference_and_skips_negative_slots(
    device: str, num_kv_heads: int, head_dim: int
) -> None:
    generator = torch.Generator().manual_seed(0)
    num_blocks, block_size = 6, 4
    key_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=generator).to(device)
    value_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=generator).to(device)
    # key/value as strided views of a fused qkv projection
    qkv = torch.randn(5, 3 * num_kv_heads * head_dim, generator=generator).to(device)
    key = qkv[:, num_kv_heads * head_dim : 2 * num_kv_heads * head_dim].view(5, num_kv_heads, head_dim)
    value = qkv[:, 2 * num_kv_heads * head_dim :].view(5, num_kv_heads, head_dim)
    slot_mapping = torch.tensor([0, 7, -1, 13, 23], device=device)
    expected_keys, expected_values = key_cache.clone(), value_cache.clone()
    stored = slot_mapping >= 0  # the reference takes no padding rows: it stores the others
    torch_reference.store_kv(key[stored], value[stored], expected_keys, expected_values, slot_mapping[stored])
    untouched_keys = key_cache.clone()
    store_kv_cache(key, value, key_cache, value_cache, slot_mapping)
    assert torch.equal(key_cache, expected_keys)
    assert torch.equal(value_cache, expected_values)
    assert torch.equal(key_cache[1, 3], key[1])  # slot 7 = block 1, offset 3
    assert torch.equal(value_cache[5, 3], value[4])  # slot 23 = block 5, offset 3
    changed = (key_cache != untouched_keys).any(dim=-1).any(dim=-1).flatten().nonzero().flatten().tolist()
    assert changed == [0, 7, 13, 23]  # the padded row (slot -1) wrote nothing


def test_bfloat16_values_are_copied_bit_for_bit(device: str) -> None:
    key_cache = torch.zeros(2, 2, 1, 8, dtype=torch.bfloat16, device=device)
    value_cache = torch.zeros_like(key_cache)
    key = torch.randn(1, 1, 8, device=device).bfloat16()
    value = torch.randn(1, 1, 8, device=device).bfloat16()
    store_kv_cache(key, value, key_cache, value_cache, torch.tensor([3], dtype=torch.int32, device=device))
    assert torch.equal(key_cache[1, 1], key[0])
    assert torch.equal(value_cache[1, 1], value[0])


def test_layout_mismatches_are_rejected(device: str) -> None:
    key_cache = torch.zeros(2, 4, 2, 8, device=device)
    key = torch.randn(3, 2, 8, device=device)
    slots = torch.tensor([0, 1, 2], device=device)
    with pytest.raises(ValueError, match=r"key has shape \[3, 4, 8\]; expected \[\*, 2, 8\]"):
        store_kv_cache(torch.randn(3, 4, 8, device=device), key, key_cache, key_cache.clone(), slots)
    with pytest.raises(ValueError, match=r"slot_mapping has shape \[2\]; expected \[3\]"):
        store_kv_cache(key, key, key_cache, key_cache.clone(), slots[:2])
    with pytest.raises(ValueError, match="key_cache must be 4-D"):
        store_kv_cache(key, key, key_cache.flatten(0, 1), key_cache.flatten(0, 1), slots)
    with pytest.raises(ValueError, match="key=float32, value=float32, key_cache=bfloat16"):
        store_kv_cache(key, key, key_cache.bfloat16(), key_cache.bfloat16(), slots)
    with pytest.raises(ValueError, match="slot_mapping has dtype float32"):
        store_kv_cache(key, key, key_cache, key_cache.clone(), slots.float())
