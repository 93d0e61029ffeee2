"""Decode steps on the static, padded buffers the CUDA graphs replay (`engine.decode_graphs`), run
eagerly on the CPU through the Triton interpreter: the engine generates the reference tokens while
every decode-only step goes through a batch bucket with padding rows (slot -1, context 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_reference import generate_greedy, make_engine, make_prompts

from berth_runtime.engine.decode_graphs import DecodeGraphs, batch_buckets
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.rms_norm import _rms_norm_kernel

MAX_NEW = 6
SETTINGS: dict[str, object] = {
    "kv_cache_blocks": 96,
    "max_model_len": 64,
    "max_num_seqs": 6,
    "max_num_batched_tokens": 24,
    "enable_prefix_caching": True,
}


def generate(engine: LLMEngine, prompts: list[list[int]]) -> list[list[int]]:
    return generate_greedy(engine, prompts, MAX_NEW)


def test_batch_buckets_double_up_to_the_max_batch_size() -> None:
    assert batch_buckets(1) == [1]
    assert batch_buckets(6) == [1, 2, 4, 6]
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 64]


def test_decode_graphs_refuse_the_reference_layers(tiny_llama_dir: Path) -> None:
    engine = make_engine(tiny_llama_dir, **SETTINGS)
    runner = engine.runner
    with pytest.raises(ValueError, match="kernel layer ops"):
        DecodeGraphs(runner.model, runner.kv_caches, 4, 64, 6, runner.device, capture=False)
    assert runner.decode_graphs is None  # off on the CPU


def test_engine_decodes_on_padded_static_buffers_with_the_reference_tokens(tiny_llama_dir: Path) -> None:
    if not runs_interpreted(_rms_norm_kernel):
        pytest.skip("runs the kernels on the CPU: needs TRITON_INTERPRET=1 (scripts/test.sh sets it)")
    prompts = make_prompts(5, vocab_size=320, seed=21, min_len=2, max_len=40)
    expected = generate(make_engine(tiny_llama_dir, **SETTINGS), prompts)

    engine = make_engine(tiny_llama_dir, **SETTINGS)
    runner = engine.runner
    runner.model.use_kernel_ops = True
    graphs = DecodeGraphs(runner.model, runner.kv_caches, 4, 64, 6, runner.device, capture=False)
    runner.decode_graphs = graphs
    buckets_run: list[tuple[int, int]] = []
    run = graphs.run

    def recording_run(bucket: int, per_token: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        buckets_run.append((per_token.shape[1], bucket))
        return run(bucket, per_token, tables)

    graphs.run = recording_run  # type: ignore[method-assign]
    assert generate(engine, prompts) == expected
    assert any(rows < bucket for rows, bucket in buckets_run)  # padding rows were really there
    assert all(bucket == min(b for b in graphs.buckets if b >= rows) for rows, bucket in buckets_run)
