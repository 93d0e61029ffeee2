"""Rotary position embeddings applied (the Llama/NeoX rotate-half form), from the cos/sin tables
`berth_runtime.models.rope` builds once per model: a gather by position, so chunked prefill and
decode share one code path."""

from __future__ import annotations

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(
    query: torch.Tensor,
    key: torch.Tensor,
    positions: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """query: [tokens, heads, head_dim], key: [tokens, kv_heads, head_dim], positions: [tokens]."""
    cos = cos_table[positions].to(query.dtype).unsqueeze(1)  # [tokens, 1, head_dim]
    sin = sin_table[positions].to(query.dtype).unsqueeze(1)
    return query * cos + _rotate_half(query) * sin, key * cos + _rotate_half(key) * sin
