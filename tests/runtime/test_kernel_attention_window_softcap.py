"""Sliding windows and logit soft-capping in the attention kernels equal the torch reference's masked,
capped attention: decode (one partition and split partitions, windows shorter and longer than the
context, padding rows) and prefill (whole prompts and chunks over a cached prefix)."""

from __future__ import annotations

import pytest
import torch
from kernel_device import kernel_device
from test_kernel_paged_attention import _case

from berth_runtime.engine.attention_metadata import PrefillBatch
from berth_runtime.kernels import paged_attention as module
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.paged_attention import paged_attention_decode
from berth_runtime.kernels.prefill_attention import paged_prefill_attention


@pytest.fixture
def device() -> str:
    return kernel_device(module._paged_decode_kernel)


@pytest.mark.parametrize(
    ("window", "softcap", "partition_tokens", "dtype"),
    [
        (5, None, 512, torch.float32),
        (None, 1.5, 512, torch.float32),
        (7, 2.0, 8, torch.float32),  # 33 tokens in 5 partitions, the first ones wholly outside the window
        (64, 3.0, 8, torch.float32),  # a window longer than every context
        (6, 2.5, 512, torch.bfloat16),
    ],
)
def test_decode_matches_reference(
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    window: int | None,
    softcap: float | None,
    partition_tokens: int,
    dtype: torch.dtype,
) -> None:
    monkeypatch.setattr(module, "PARTITION_TOKENS", partition_tokens)
    query, key_cache, value_cache, block_tables, lens = _case(device, dtype, [1, 6, 20, 33, 0])
    scale = 0.3 if softcap is None else 2.0  # a large scale, so a small cap changes the scores
    actual = paged_attention_decode(
        query, key_cache, value_cache, block_tables, lens, scale, sliding_window=window, logit_softcap=softcap
    )
    expected = torch_reference.decode_attention(
        query[:4], key_cache, value_cache, block_tables[:4], lens[:4], scale, None, window, softcap
    )
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(actual[:4], expected, rtol=tolerance, atol=tolerance)
    assert torch.all(actual[4] == 0)  # a padding row (context 0) stays zeros
    unwindowed = torch_reference.decode_attention(
        query[:4], key_cache, value_cache, block_tables[:4], lens[:4], scale
    )
    if window is not None and window < 33 and softcap is None:
        assert not torch.allclose(actual[3], unwindowed[3], atol=1e-3)  # the window changed the result


def test_decode_rejects_a_window_below_one(device: str) -> None:
    query, key_cache, value_cache, block_tables, lens = _case(device, torch.float32, [3])
    with pytest.raises(ValueError, match="sliding_window must be >= 1 or None; got 0"):
        paged_attention_decode(query, key_cache, value_cache, block_tables, lens, 0.3, sliding_window=0)


@pytest.mark.parametrize(
    ("window", "softcap", "dtype"),
    [(4, None, torch.float32), (None, 2.0, torch.float32), (5, 1.5, torch.float32), (7, 3.0, torch.bfloat16)],
)
def test_prefill_matches_reference(
    device: str, window: int | None, softcap: float | None, dtype: torch.dtype
) -> None:
    """Row 0 a whole 37-token prompt (three query blocks), row 1 a 4-token chunk over 7 cached tokens;
    soft-capped and off-flash windowed rows run the Triton flash prefill."""
    generator = torch.Generator().manual_seed(7)
    key_cache = torch.randn(16, 4, 2, 16, generator=generator).to(device, dtype)
    value_cache = torch.randn(16, 4, 2, 16, generator=generator).to(device, dtype)
    query = torch.randn(41, 4, 16, generator=generator).to(device, dtype)
    slots = torch.cat([torch.arange(0, 37), torch.arange(40, 51)]).to(device)
    batch = PrefillBatch(
        query_offsets=[0, 37, 41],
        context_offsets=[0, 37, 48],
        kv_slots=slots,
        cu_seq_q=torch.tensor([0, 37, 41], dtype=torch.int32, device=device),
        cu_seq_k=torch.tensor([0, 37, 48], dtype=torch.int32, device=device),
        max_query_len=37,
        max_context_len=37,
    )
    scale = 0.9 if softcap is None else 2.0
    actual = paged_prefill_attention(query, key_cache, value_cache, batch, scale, window, softcap)
    expected = torch_reference.prefill_attention(query, key_cache, value_cache, batch, scale, window, softcap)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)
