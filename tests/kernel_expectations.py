"""What a kernel with padding rows must produce, from the one torch reference (which takes none):
shared by the CPU kernel tests (tests/runtime) and the GPU ones (tests/gpu)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from berth_runtime.kernels import torch_reference


@dataclass(frozen=True)
class RotaryStoreExpectation:
    """`stored`: the rows with a slot (>= 0); the reference's rotated query for them, and the caches
    after it stored those rows' keys and values."""

    stored: torch.Tensor
    query: torch.Tensor
    key_cache: torch.Tensor
    value_cache: torch.Tensor


def expected_rotary_and_store(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    positions: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slots: torch.Tensor,
) -> RotaryStoreExpectation:
    """The reference run on copies, on the rows that are not padding (slot -1): what the fused kernel
    must leave, skipping the padding rows itself."""
    stored = slots >= 0
    expected_keys, expected_values = key_cache.clone(), value_cache.clone()
    expected_query = torch_reference.rotary_and_store_kv(
        query[stored],  # boolean indexing copies: the inputs stay as they are
        key[stored],
        value[stored],
        positions[stored],
        cos,
        sin,
        expected_keys,
        expected_values,
        slots[stored],
    )
    return RotaryStoreExpectation(stored, expected_query, expected_keys, expected_values)
