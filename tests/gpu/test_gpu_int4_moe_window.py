"""On CUDA (compiled, not interpreted): the int4 kernel, the fused experts and the soft-capped flash
prefill at production-like shapes in bf16 against their torch references, an act-order `Int4Linear`
on CUDA against the same layer on the CPU, and Gemma 2 (sliding windows, soft-capped scores) and
Mixtral (fused experts) engines whose decode steps replay captured CUDA graphs generating the eager
engine's tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from berth_runtime.engine.decode_graphs import DecodeGraphs
from berth_runtime.kernels import torch_reference
from berth_runtime.kernels.flash_prefill import flash_prefill_attention
from berth_runtime.kernels.fused_moe import fused_experts
from berth_runtime.kernels.int4_linear import int4_linear
from berth_runtime.models.loader import load_model
from berth_runtime.quantization.int4_linear import Int4Linear


def _int4(out_features: int, in_features: int, group: int = 128) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(out_features)
    qweight = torch.randint(-(2**31), 2**31 - 1, (out_features, in_features // 8), generator=generator)
    scale = (torch.rand(out_features, in_features // group, generator=generator) * 0.004).half()
    zero = torch.randint(0, 16, (out_features, in_features // group), generator=generator).to(torch.uint8)
    return qweight.int().cuda(), scale.cuda(), zero.cuda()


@pytest.mark.parametrize("rows", [1, 3, 8, 64, 300])
def test_int4_kernel_matches_reference_in_bf16(rows: int) -> None:
    qweight, scale, zero = _int4(4096, 4096)
    x = torch.randn(rows, 4096, device="cuda", dtype=torch.bfloat16)
    expected = torch_reference.int4_linear(x, qweight, scale, zero)
    torch.testing.assert_close(int4_linear(x, qweight, scale, zero), expected, rtol=2e-2, atol=2e-2)


def test_int4_layer_on_cuda_equals_the_layer_on_the_cpu() -> None:
    layer = Int4Linear(1024, 768, 128, None, [512, 256], torch.device("cpu"))
    qweight, scale, zero = _int4(768, 1024)
    layer.qweight.copy_(qweight.cpu())
    layer.scale.copy_(scale.cpu())
    layer.zero.copy_(zero.cpu())
    assert layer.input_permutation is not None
    layer.input_permutation.copy_(torch.randperm(1024).int().expand(2, -1))
    x = torch.randn(5, 1024)
    expected = layer(x)
    torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("tokens", [1, 7, 200])
def test_fused_experts_match_reference_in_bf16(tokens: int) -> None:
    experts, top_k, hidden, intermediate = 8, 2, 1024, 2048
    gate_up = torch.randn(experts, 2 * intermediate, hidden, device="cuda", dtype=torch.bfloat16) * 0.03
    down = torch.randn(experts, hidden, intermediate, device="cuda", dtype=torch.bfloat16) * 0.03
    x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
    weights, expert_ids = torch.topk(torch.softmax(torch.randn(tokens, experts, device="cuda"), -1), top_k)
    expected = torch_reference.grouped_experts(x, gate_up, down, weights, expert_ids)
    actual = fused_experts(x, gate_up, down, weights, expert_ids, torch_reference.silu_and_mul)
    torch.testing.assert_close(actual, expected, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("window", [None, 512])
def test_flash_prefill_matches_reference_at_gemma2_head_dim(window: int | None) -> None:
    """Two rows, a 1,500-token prompt and a 300-token chunk over 900 cached tokens; 16/8 heads of 256."""
    query = torch.randn(1800, 16, 256, device="cuda", dtype=torch.bfloat16)
    keys = torch.randn(2700, 8, 256, device="cuda", dtype=torch.bfloat16)
    values = torch.randn_like(keys)
    cu_seq_q = torch.tensor([0, 1500, 1800], device="cuda", dtype=torch.int32)
    cu_seq_k = torch.tensor([0, 1500, 2700], device="cuda", dtype=torch.int32)
    actual = flash_prefill_attention(query, keys, values, cu_seq_q, cu_seq_k, 1500, 256**-0.5, window, 50.0)
    for rows, context in ((slice(0, 1500), slice(0, 1500)), (slice(1500, 1800), slice(1500, 2700))):
        expected = torch_reference._attend_prefill_row(
            query[rows],
            keys[context].transpose(0, 1),
            values[context].transpose(0, 1),
            256**-0.5,
            window,
            50.0,
        )
        torch.testing.assert_close(actual[rows], expected, rtol=3e-2, atol=3e-2)


def _write(directory: Path, config_class: Any, model_class: Any, **settings: Any) -> Path:
    torch.manual_seed(0)
    config = config_class(
        vocab_size=1024,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        **settings,
    )
    model_class(config).eval().save_pretrained(directory)
    return directory


def _gemma2(directory: Path) -> Path:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    return _write(
        directory, Gemma2Config, Gemma2ForCausalLM, sliding_window=16, attn_logit_softcapping=4.0,
        final_logit_softcapping=30.0, query_pre_attn_scalar=64,
    )  # fmt: skip


def _mixtral(directory: Path) -> Path:
    from transformers import MixtralConfig, MixtralForCausalLM

    return _write(directory, MixtralConfig, MixtralForCausalLM, num_local_experts=8, num_experts_per_tok=2)


@pytest.mark.parametrize("write", [_gemma2, _mixtral])
def test_windowed_capped_and_expert_models_replay_decode_graphs(
    tmp_path: Path,
    engine_factory: Callable[..., object],
    greedy_tokens: Callable[..., list[list[int]]],
    write: Callable[[Path], Path],
) -> None:
    model = load_model(write(tmp_path), torch.float32, torch.device("cuda"), max_positions=1024)
    assert model.supports_decode_graphs
    prompts = [[1, *range(3, 3 + n)] for n in (5, 40, 90)]  # longer than the 16-token window
    expected = greedy_tokens(engine_factory(model, torch.float32), prompts, 24)
    engine = engine_factory(model, torch.float32)
    runner = engine.runner  # type: ignore[attr-defined]
    graphs = DecodeGraphs(model, runner.kv_caches, runner.block_size, 1024, 8, runner.device, capture=True)
    graphs.capture_all()
    runner.decode_graphs = graphs
    replays: list[int] = []
    run = graphs.run

    def counted_run(bucket: int, per_token: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        replays.append(bucket)
        return run(bucket, per_token, tables)

    graphs.run = counted_run  # type: ignore[method-assign]
    assert greedy_tokens(engine, prompts, 24) == expected
    assert replays, "no decode step replayed a graph"
