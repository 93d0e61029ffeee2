"""Prefill attention over the paged cache, all rows of a step packed in one call: causal for a whole
prompt, and for a chunk whose earlier tokens are already cached (the query rows sit at the end of
the context); each row equal to the torch reference run on that row alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from berth_runtime.engine.attention_metadata import PrefillBatch, pack_prefill_rows
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.prefill_attention import paged_prefill_attention

BLOCK_SIZE = 4


def packed(rows: list[tuple[int, int, torch.Tensor]], device: str | torch.device = "cpu") -> PrefillBatch:
    """rows: (query_len, context_len, block_ids) -> the batch the model runner would build."""
    tables = np.zeros((len(rows), max(len(block_ids) for _, _, block_ids in rows)), dtype=np.int64)
    for index, (_, _, block_ids) in enumerate(rows):
        tables[index, : len(block_ids)] = block_ids.cpu().numpy()
    return pack_prefill_rows(
        np.array([query_len for query_len, _, _ in rows]),
        np.array([context_len for _, context_len, _ in rows]),
        tables,
        BLOCK_SIZE,
        lambda array: torch.from_numpy(array).to(device),
    )


def reference_row(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_ids: torch.Tensor,
    context_len: int,
) -> torch.Tensor:
    """The torch reference on one row, packed on its own (scale 0.25)."""
    batch = packed([(query.shape[0], context_len, block_ids)])
    return torch_reference.prefill_attention(query, key_cache, value_cache, batch, 0.25)


def _cache(num_blocks: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (num_blocks, BLOCK_SIZE, 2, 16)
    return torch.randn(shape, generator=generator).to(dtype), torch.randn(shape, generator=generator).to(
        dtype
    )


def _query(query_len: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(query_len, 6, 16, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize(("query_len", "context_len"), [(9, 9), (5, 14), (1, 6)])
def test_one_row_matches_the_reference(query_len: int, context_len: int) -> None:
    key_cache, value_cache = _cache(8, torch.float32, query_len)
    block_ids = torch.randperm(8, generator=torch.Generator().manual_seed(context_len))[
        : -(-context_len // 4)
    ]
    query = _query(query_len, context_len)
    actual = paged_prefill_attention(
        query, key_cache, value_cache, packed([(query_len, context_len, block_ids)]), 0.25
    )
    expected = reference_row(query, key_cache, value_cache, block_ids, context_len)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_packed_rows_each_attend_to_their_own_context() -> None:
    """Three rows in one call (a whole prompt, a chunk over a cached prefix sharing its blocks, a
    single-token tail): each equals its reference, so no row sees another's keys."""
    key_cache, value_cache = _cache(16, torch.float32, 3)
    rows = [
        (7, 7, torch.tensor([3, 9])),
        (6, 13, torch.tensor([3, 9, 12, 0])),
        (1, 5, torch.tensor([15, 2])),
    ]
    queries = [_query(query_len, seed) for seed, (query_len, _, _) in enumerate(rows)]
    actual = paged_prefill_attention(torch.cat(queries), key_cache, value_cache, packed(rows), 0.25)
    start = 0
    for query, (query_len, context_len, block_ids) in zip(queries, rows, strict=True):
        expected = reference_row(query, key_cache, value_cache, block_ids, context_len)
        torch.testing.assert_close(actual[start : start + query_len], expected, rtol=1e-5, atol=1e-5)
        start += query_len


def test_a_chunk_equals_the_tail_of_the_whole_prompt() -> None:
    key_cache, value_cache = _cache(5, torch.float32, 12)
    block_ids = torch.tensor([4, 0, 2])
    query = _query(12, 12)
    whole = paged_prefill_attention(query, key_cache, value_cache, packed([(12, 12, block_ids)]), 0.25)
    tail = paged_prefill_attention(query[7:], key_cache, value_cache, packed([(5, 12, block_ids)]), 0.25)
    torch.testing.assert_close(tail, whole[7:], rtol=1e-5, atol=1e-5)


def test_first_token_attends_only_to_itself() -> None:
    key_cache, value_cache = _cache(2, torch.float32, 1)
    block_ids = torch.tensor([1])
    out = paged_prefill_attention(_query(3, 3), key_cache, value_cache, packed([(3, 3, block_ids)]), 1.0)
    first_value = value_cache[1, 0]  # [kv_heads, head_dim]
    torch.testing.assert_close(out[0], first_value.repeat_interleave(3, dim=0))


def test_a_query_that_does_not_match_the_batch_is_rejected() -> None:
    key_cache, value_cache = _cache(4, torch.float32, 2)
    batch = packed([(5, 8, torch.tensor([0, 1]))])
    with pytest.raises(ValueError, match="query has 4 tokens; the batch's rows hold 5"):
        paged_prefill_attention(_query(4, 0), key_cache, value_cache, batch, 1.0)
    with pytest.raises(ValueError, match="query heads 6 must be a multiple of KV heads 4"):
        paged_prefill_attention(
            _query(5, 0), *(cache.repeat(1, 1, 2, 1) for cache in (key_cache, value_cache)), batch, 1.0
        )
