"""Decode attention over the paged cache equals the torch reference (masked SDPA over the gathered
context): GQA groups, shuffled block tables, variable lengths, split (flash-decoding) partitions; and
padding rows, which only the kernel takes, give zeros."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from kernel_device import kernel_device

from berth_runtime.kernels import paged_attention as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.paged_attention import paged_attention_decode


@pytest.fixture
def device() -> str:
    return kernel_device(module._paged_decode_kernel)


def _case(
    device: str,
    dtype: torch.dtype,
    context_lens: list[int],
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    block_size: int = 4,
) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(sum(context_lens))
    max_blocks = max(1, -(-max(context_lens) // block_size))
    num_blocks = len(context_lens) * max_blocks + 3
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    key_cache = torch.randn(shape, generator=generator).to(device, dtype)
    value_cache = torch.randn(shape, generator=generator).to(device, dtype)
    # every sequence gets its own blocks, in shuffled order
    block_tables = torch.randperm(num_blocks, generator=generator)[: len(context_lens) * max_blocks]
    block_tables = block_tables.view(len(context_lens), max_blocks).to(device, torch.int32)
    query = torch.randn(len(context_lens), num_heads, head_dim, generator=generator).to(device, dtype)
    lens = torch.tensor(context_lens, dtype=torch.int32, device=device)
    return query, key_cache, value_cache, block_tables, lens


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 2e-2, "atol": 2e-2} if dtype != torch.float32 else {"rtol": 1e-4, "atol": 1e-4}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_decode_matches_reference_with_gqa_and_variable_lengths(device: str, dtype: torch.dtype) -> None:
    query, key_cache, value_cache, block_tables, lens = _case(device, dtype, [1, 7, 20, 33])
    actual = paged_attention_decode(query, key_cache, value_cache, block_tables, lens, scale=0.25)
    expected = torch_reference.decode_attention(query, key_cache, value_cache, block_tables, lens, scale=0.25)
    torch.testing.assert_close(actual, expected, **_tolerance(dtype))


@pytest.mark.parametrize("partition_tokens", [8, 2])  # 33 tokens -> 5 or 17 partitions (merged in chunks)
def test_split_partitions_merge_to_the_same_result(
    device: str, monkeypatch: pytest.MonkeyPatch, partition_tokens: int
) -> None:
    monkeypatch.setattr(module, "PARTITION_TOKENS", partition_tokens)  # some partitions empty for short rows
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [2, 9, 33], num_heads=8)
    actual = paged_attention_decode(query, key_cache, value_cache, block_tables, lens, scale=0.3)
    expected = torch_reference.decode_attention(query, key_cache, value_cache, block_tables, lens, scale=0.3)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_a_graph_sized_max_context_len_changes_nothing(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA graphs capture with max_context_len = max_model_len: extra partitions must be inert."""
    monkeypatch.setattr(module, "PARTITION_TOKENS", 8)
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [5, 12])
    actual = paged_attention_decode(
        query, key_cache, value_cache, block_tables, lens, 0.3, max_context_len=64
    )
    expected = torch_reference.decode_attention(query, key_cache, value_cache, block_tables, lens, scale=0.3)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sliding_window", [None, 10])
def test_partitions_without_keys_are_neither_written_nor_read(
    device: str, monkeypatch: pytest.MonkeyPatch, sliding_window: int | None
) -> None:
    """A graph sized for the longest context launches every partition; those past a sequence's
    context (or wholly before its window) must leave their partial state alone, and the merge must
    not read it: the partial buffers start as NaN here, so one read would poison the output."""
    monkeypatch.setattr(module, "PARTITION_TOKENS", 4)
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [5, 17, 0])
    allocated: list[torch.Tensor] = []
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def poisoned(allocate: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def allocate_nan(*args: Any, **kwargs: Any) -> torch.Tensor:
            tensor = allocate(*args, **kwargs).fill_(float("nan"))
            allocated.append(tensor)
            return tensor

        return allocate_nan

    out = torch.zeros_like(query)
    monkeypatch.setattr(torch, "empty", poisoned(real_empty))
    monkeypatch.setattr(torch, "empty_like", poisoned(real_empty_like))
    paged_attention_decode(
        query, key_cache, value_cache, block_tables, lens, 0.3, 64, out=out, sliding_window=sliding_window
    )
    monkeypatch.undo()
    expected = torch_reference.decode_attention(
        query, key_cache, value_cache, block_tables, lens, scale=0.3, sliding_window=sliding_window
    )
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    partial_max = next(t for t in allocated if t.dim() == 3)  # [seqs, heads, 16 partitions]
    for row, length in enumerate([5, 17, 0]):
        first = max(length - (sliding_window or length), 0) // 4
        live = range(first, -(-length // 4))
        for partition in range(partial_max.shape[2]):
            written = bool(torch.isfinite(partial_max[row, :, partition]).all())
            assert written == (partition in live), (row, partition)


def test_padding_rows_with_no_context_give_zeros(device: str) -> None:
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [6, 6])
    lens[1] = 0
    out = torch.full_like(query, float("nan"))
    paged_attention_decode(query, key_cache, value_cache, block_tables, lens, 0.3, out=out)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.isfinite(out[0]).all()


def test_the_query_heads_of_a_group_read_their_own_kv_head(device: str) -> None:
    """One cached token: softmax over one key is 1, so the output is that token's value of the KV head."""
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [1], num_heads=4)
    out = paged_attention_decode(query, key_cache, value_cache, block_tables, lens, 1.0)
    block = int(block_tables[0, 0])
    for head in range(4):
        torch.testing.assert_close(out[0, head], value_cache[block, 0, head // 2])


def test_mismatched_arguments_are_rejected(device: str) -> None:
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [3, 4])
    with pytest.raises(ValueError, match="query heads 3 must be a multiple of the cache's KV heads 2"):
        paged_attention_decode(query[:, :3], key_cache, value_cache, block_tables, lens, 1.0)
    with pytest.raises(ValueError, match=r"context_lens has shape \[1\]; expected \[2\]"):
        paged_attention_decode(query, key_cache, value_cache, block_tables, lens[:1], 1.0)
    with pytest.raises(ValueError, match="block_tables has dtype float32"):
        paged_attention_decode(query, key_cache, value_cache, block_tables.float(), lens, 1.0)
    with pytest.raises(ValueError, match="key_cache head_dim 8 differs from query head_dim 16"):
        paged_attention_decode(query, key_cache[..., :8].contiguous(), value_cache, block_tables, lens, 1.0)
    with pytest.raises(ValueError, match="max_context_len must be >= 0"):
        paged_attention_decode(query, key_cache, value_cache, block_tables, lens, 1.0, max_context_len=-1)


def test_block_tables_and_lengths_may_be_strided_views(device: str) -> None:
    """The engine sends block tables with the context lengths as an extra last column (one transfer)."""
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [3, 10, 17])
    packed = torch.cat([block_tables, lens[:, None]], dim=1).to(torch.int64)
    tables_view, lens_view = packed[:, :-1], packed[:, -1]
    actual = paged_attention_decode(query, key_cache, value_cache, tables_view, lens_view, 0.3)
    expected = torch_reference.decode_attention(query, key_cache, value_cache, block_tables, lens, 0.3)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
