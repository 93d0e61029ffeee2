"""The model's kernel path (`use_kernel_ops`, what `load_model` turns on for CUDA devices) run on the
CPU through the Triton interpreter: the engine generates the reference path's greedy tokens with
every kernel op really called (chunked prefill over cached prefixes, batched decodes and
speculative multi-token rows included); on the CPU the model keeps the reference layers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_reference import generate_greedy, make_engine, make_prompts

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.rms_norm import _rms_norm_kernel
from berth_runtime.models import llama

MAX_NEW = 8
SETTINGS: dict[str, object] = {
    "kv_cache_blocks": 128,
    "max_num_batched_tokens": 24,  # chunked prefill over already-cached tokens
    "enable_prefix_caching": True,
    "speculative_method": "ngram",
    "num_speculative_tokens": 3,
}


def prompts() -> list[list[int]]:
    shared = make_prompts(1, vocab_size=320, seed=11, min_len=9, max_len=9)[0]
    tails = make_prompts(3, vocab_size=320, seed=12, min_len=2, max_len=30)
    return [shared + tail[1:] for tail in tails] + [[0, 40, 41, 42, 40, 41, 42, 40, 41]]


def generate(engine: LLMEngine) -> list[list[int]]:
    return generate_greedy(engine, prompts(), MAX_NEW)


def _counted(op: Callable[..., Any], name: str, calls: dict[str, int]) -> Callable[..., Any]:
    def counted(*args: Any) -> Any:
        calls[name] += 1
        return op(*args)

    return counted


def test_the_model_keeps_the_reference_layers_on_the_cpu(tiny_llama_dir: Path) -> None:
    assert make_engine(tiny_llama_dir).runner.model.use_kernel_ops is False


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_engine_on_the_kernel_path_generates_the_reference_tokens(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    if not runs_interpreted(_rms_norm_kernel):
        pytest.skip("runs the kernels on the CPU: needs TRITON_INTERPRET=1 (scripts/test.sh sets it)")
    expected = generate(make_engine(tiny_llama_dir, dtype=dtype, **SETTINGS))
    fields = [field.name for field in dataclasses.fields(llama.LayerOps)]
    calls = dict.fromkeys(fields, 0)
    counted = {name: _counted(getattr(llama.KERNEL_OPS, name), name, calls) for name in fields}
    monkeypatch.setattr(llama, "KERNEL_OPS", llama.LayerOps(**counted))
    engine = make_engine(tiny_llama_dir, dtype=dtype, **SETTINGS)
    engine.runner.model.use_kernel_ops = True
    actual = generate(engine)
    dense = {name: count for name, count in calls.items() if name != "grouped_experts"}  # no experts here
    assert all(count > 0 for count in dense.values()), calls  # every kernel op really ran
    assert engine.stats().spec_decode_num_draft_tokens > 0
    assert actual == expected
