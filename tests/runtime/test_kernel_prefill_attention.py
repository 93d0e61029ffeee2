"""Prefill attention over the paged cache: causal for a whole prompt, and for a chunk whose earlier
tokens are already cached (the query rows sit at the end of the context)."""

from __future__ import annotations

import pytest
import torch

from berth_runtime.kernels.prefill_attention import paged_prefill_attention, paged_prefill_attention_reference


def _case(query_len: int, context_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(query_len * 100 + context_len)
    block_size, num_kv_heads, head_dim = 4, 2, 16
    num_blocks = -(-context_len // block_size) + 2
    key_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=generator).to(dtype)
    value_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=generator).to(dtype)
    block_ids = torch.randperm(num_blocks, generator=generator)[: -(-context_len // block_size)]
    query = torch.randn(query_len, 6, head_dim, generator=generator).to(dtype)
    return query, key_cache, value_cache, block_ids


@pytest.mark.parametrize(("query_len", "context_len"), [(9, 9), (5, 14), (1, 6)])
def test_prefill_matches_the_masked_reference(query_len: int, context_len: int) -> None:
    query, key_cache, value_cache, block_ids = _case(query_len, context_len, torch.float32)
    actual = paged_prefill_attention(query, key_cache, value_cache, block_ids, context_len, 0.25)
    expected = paged_prefill_attention_reference(query, key_cache, value_cache, block_ids, context_len, 0.25)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_a_chunk_equals_the_tail_of_the_whole_prompt() -> None:
    query, key_cache, value_cache, block_ids = _case(12, 12, torch.float32)
    whole = paged_prefill_attention(query, key_cache, value_cache, block_ids, 12, 0.25)
    tail = paged_prefill_attention(query[7:], key_cache, value_cache, block_ids, 12, 0.25)
    torch.testing.assert_close(tail, whole[7:], rtol=1e-5, atol=1e-5)


def test_first_token_attends_only_to_itself() -> None:
    query, key_cache, value_cache, block_ids = _case(3, 3, torch.float32)
    out = paged_prefill_attention(query, key_cache, value_cache, block_ids, 3, 1.0)
    first_value = value_cache[block_ids[0], 0]  # [kv_heads, head_dim]
    torch.testing.assert_close(out[0], first_value.repeat_interleave(3, dim=0))


def test_context_shorter_than_the_chunk_is_rejected() -> None:
    query, key_cache, value_cache, block_ids = _case(5, 8, torch.float32)
    with pytest.raises(ValueError, match="context_len 4 must be at least query_len 5"):
        paged_prefill_attention(query, key_cache, value_cache, block_ids, 4, 1.0)
    with pytest.raises(
        ValueError, match="context_len 40 must be at least query_len 5 and at most the 2 given"
    ):
        paged_prefill_attention(query, key_cache, value_cache, block_ids, 40, 1.0)
