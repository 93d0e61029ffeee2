"""The Triton kernels, compiled for the GPU, against the torch reference at production shapes
(Llama-3 8B: 32 query / 8 KV heads, head_dim 128, hidden 4096, FFN 14336; block size 16), plus a
CUDA-graph capture and replay of paged decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from berth_runtime.engine.attention_metadata import pack_prefill_rows
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.activation import silu_and_mul
from berth_runtime.kernels.kv_cache_store import store_kv_cache
from berth_runtime.kernels.paged_attention import paged_attention_decode
from berth_runtime.kernels.prefill_attention import paged_prefill_attention
from berth_runtime.kernels.rms_norm import add_rms_norm
from berth_runtime.kernels.rotary import apply_rotary_embedding
from berth_runtime.kernels.rotary_kv_store import rotary_and_store_kv
from berth_runtime.kernels.weight_only_linear import weight_only_linear
from berth_runtime.quantization.quantize import quantize_fp8, quantize_int8
from tests.kernel_expectations import expected_rotary_and_store

CUDA = "cuda"
BF16 = torch.bfloat16


def test_add_rms_norm_hidden_4096() -> None:
    x = torch.randn(64, 4096, device=CUDA, dtype=BF16)
    residual = torch.randn(64, 4096, device=CUDA, dtype=BF16)
    weight = torch.randn(4096, device=CUDA, dtype=BF16)
    kernel_residual = residual.clone()
    normed = add_rms_norm(x, kernel_residual, weight, 1e-5)
    expected, expected_residual = torch_reference.add_rms_norm(x, residual, weight, 1e-5)
    assert torch.equal(kernel_residual, expected_residual)
    torch.testing.assert_close(normed, expected, rtol=2**-7, atol=1e-2)


def test_silu_and_mul_ffn_14336() -> None:
    gate_up = 3 * torch.randn(8, 2 * 14336, device=CUDA, dtype=BF16)
    torch.testing.assert_close(
        silu_and_mul(gate_up), torch_reference.silu_and_mul(gate_up), rtol=2**-6, atol=1e-3
    )


def test_rotary_head_dim_128() -> None:
    inv_freq = 1.0 / (500000 ** (torch.arange(0, 128, 2, dtype=torch.float32, device=CUDA) / 128))
    freqs = torch.outer(torch.arange(8192, dtype=torch.float32, device=CUDA), inv_freq)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    qkv = torch.randn(300, 48 * 128, device=CUDA, dtype=BF16)
    query, key = qkv[:, : 32 * 128].view(300, 32, 128), qkv[:, 32 * 128 : 40 * 128].view(300, 8, 128)
    positions = torch.randint(0, 8192, (300,), device=CUDA)
    expected_query, expected_key = torch_reference.apply_rotary(query, key, positions, cos, sin)
    apply_rotary_embedding(query, key, positions, cos, sin)
    torch.testing.assert_close(query, expected_query, rtol=2**-7, atol=1e-2)
    torch.testing.assert_close(key, expected_key, rtol=2**-7, atol=1e-2)


def test_fused_rotary_and_kv_store_head_dim_128() -> None:
    inv_freq = 1.0 / (500000 ** (torch.arange(0, 128, 2, dtype=torch.float32, device=CUDA) / 128))
    freqs = torch.outer(torch.arange(4096, dtype=torch.float32, device=CUDA), inv_freq)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    qkv = torch.randn(64, 48 * 128, device=CUDA, dtype=BF16)
    query = qkv[:, : 32 * 128].view(64, 32, 128)
    key, value = qkv[:, 32 * 128 : 40 * 128].view(64, 8, 128), qkv[:, 40 * 128 :].view(64, 8, 128)
    positions = torch.randint(0, 4096, (64,), device=CUDA)
    slots = torch.randperm(128 * 16, device=CUDA)[:64]
    slots[::9] = -1
    key_cache = torch.zeros(128, 16, 8, 128, device=CUDA, dtype=BF16)
    value_cache = torch.zeros_like(key_cache)
    expected = expected_rotary_and_store(
        query, key, value, positions, cos, sin, key_cache, value_cache, slots
    )
    stored, expected_query = expected.stored, expected.query
    expected_keys, expected_values = expected.key_cache, expected.value_cache
    rotary_and_store_kv(query, key, value, positions, cos, sin, key_cache, value_cache, slots)
    torch.testing.assert_close(query[stored], expected_query, rtol=2**-7, atol=1e-2)
    torch.testing.assert_close(key_cache, expected_keys, rtol=2**-7, atol=1e-2)
    assert torch.equal(value_cache, expected_values)


def test_kv_store_block_16() -> None:
    key_cache = torch.zeros(256, 16, 8, 128, device=CUDA, dtype=BF16)
    value_cache = torch.zeros_like(key_cache)
    key = torch.randn(200, 8, 128, device=CUDA, dtype=BF16)
    value = torch.randn(200, 8, 128, device=CUDA, dtype=BF16)
    slots = torch.randperm(256 * 16, device=CUDA)[:200]
    slots[::17] = -1
    expected_keys, expected_values = key_cache.clone(), value_cache.clone()
    stored = slots >= 0  # the reference takes no padding rows: it stores the others
    torch_reference.store_kv(key[stored], value[stored], expected_keys, expected_values, slots[stored])
    store_kv_cache(key, value, key_cache, value_cache, slots)
    assert torch.equal(key_cache, expected_keys) and torch.equal(value_cache, expected_values)


def _paged_case(context_lens: list[int]) -> tuple[torch.Tensor, ...]:
    max_blocks = -(-max(context_lens) // 16)
    num_blocks = len(context_lens) * max_blocks + 4
    key_cache = torch.randn(num_blocks, 16, 8, 128, device=CUDA, dtype=BF16)
    value_cache = torch.randn_like(key_cache)
    tables = torch.randperm(num_blocks, device=CUDA)[: len(context_lens) * max_blocks]
    tables = tables.view(len(context_lens), max_blocks).to(torch.int32)
    query = torch.randn(len(context_lens), 32, 128, device=CUDA, dtype=BF16)
    lens = torch.tensor(context_lens, dtype=torch.int32, device=CUDA)
    return query, key_cache, value_cache, tables, lens


@pytest.mark.parametrize("context_lens", [[1], [37, 512, 513, 4000], list(range(1, 4097, 64))])
def test_paged_decode_gqa_32_8(context_lens: list[int]) -> None:
    query, key_cache, value_cache, tables, lens = _paged_case(context_lens)
    scale = 128**-0.5
    actual = paged_attention_decode(query, key_cache, value_cache, tables, lens, scale)
    expected = torch_reference.decode_attention(query, key_cache, value_cache, tables, lens, scale)
    torch.testing.assert_close(actual, expected, rtol=2e-2, atol=2e-2)


def test_paged_decode_replays_from_a_cuda_graph() -> None:
    # one 2048-token row sizes every block table for the replays' longer contexts
    query, key_cache, value_cache, tables, lens = _paged_case([100, 700, 2048, 30])
    scale = 128**-0.5
    out = torch.empty_like(query)
    paged_attention_decode(query, key_cache, value_cache, tables, lens, scale, max_context_len=2048, out=out)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        paged_attention_decode(
            query, key_cache, value_cache, tables, lens, scale, max_context_len=2048, out=out
        )
    for new_lens in ([5, 1600, 2048, 1], [2000, 1, 17, 512]):
        lens.copy_(torch.tensor(new_lens, dtype=torch.int32))
        query.copy_(torch.randn_like(query))
        graph.replay()
        expected = torch_reference.decode_attention(query, key_cache, value_cache, tables, lens, scale)
        torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
def test_prefill_rows_packed_in_one_call(dtype: torch.dtype) -> None:
    """bf16 takes the varlen flash call, fp32 the per-row SDPA: a 2,048-token prompt, a 512-token chunk
    over a cached 1,536-token prefix (the causal mask must align to the row's end), a 1-token tail,
    each equal to its per-row reference."""
    key_cache = torch.randn(400, 16, 8, 128, device=CUDA, dtype=dtype)
    value_cache = torch.randn_like(key_cache)
    blocks = torch.randperm(400, device=CUDA)
    rows = [(2048, 2048, blocks[:128]), (512, 2048, blocks[128:256]), (1, 77, blocks[256:261])]
    tables = np.zeros((len(rows), 128), dtype=np.int64)
    for index, (_, _, block_ids) in enumerate(rows):
        tables[index, : len(block_ids)] = block_ids.cpu().numpy()

    def to_cuda(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(CUDA)

    batch = pack_prefill_rows(
        np.array([row[0] for row in rows]), np.array([row[1] for row in rows]), tables, 16, to_cuda
    )
    queries = [torch.randn(query_len, 32, 128, device=CUDA, dtype=dtype) for query_len, _, _ in rows]
    actual = paged_prefill_attention(torch.cat(queries), key_cache, value_cache, batch, 128**-0.5)
    start = 0
    for index, (query, (query_len, context_len, _)) in enumerate(zip(queries, rows, strict=True)):
        alone = pack_prefill_rows(
            np.array([query_len]), np.array([context_len]), tables[index : index + 1], 16, to_cuda
        )
        expected = torch_reference.prefill_attention(query, key_cache, value_cache, alone, 128**-0.5)
        torch.testing.assert_close(actual[start : start + query_len], expected, rtol=2e-2, atol=2e-2)
        start += query_len


@pytest.mark.parametrize("method", ["int8", "fp8"])
@pytest.mark.parametrize("rows", [1, 8, 64, 300])
@pytest.mark.parametrize(("out_features", "in_features"), [(6144, 4096), (4096, 14336)])
def test_weight_only_linear_llama_8b_shapes(
    method: str, rows: int, out_features: int, in_features: int
) -> None:
    if method == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 e4m3 needs compute capability >= 8.9")
    weight = torch.randn(out_features, in_features, device=CUDA, dtype=BF16) * 0.02
    qweight, scale = (quantize_int8 if method == "int8" else quantize_fp8)(weight)
    x = torch.randn(rows, in_features, device=CUDA, dtype=BF16)
    actual = weight_only_linear(x, qweight, scale)
    expected = torch_reference.weight_only_linear(x, qweight, scale)
    torch.testing.assert_close(actual, expected, rtol=2e-2, atol=2e-2)
