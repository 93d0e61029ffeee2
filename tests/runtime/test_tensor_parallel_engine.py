"""Tensor parallelism on the CPU (gloo), in-process: rank 0 is this test process, its workers are
real spawned processes. Against the same engine at tensor_parallel_size=1 on the same checkpoint:

- the logits of a chunked prefill (beside another sequence's decode) and of every decode step after
  it are equal within fp32 tolerance;
- greedy tokens over concurrent requests with prefix caching, chunked prefill, preemption and n-gram
  speculation on are identical.

Cases: a Llama (4 heads, 2 KV heads) and a Qwen2 (q/k/v bias, tied embeddings, sharded safetensors)
at 2 and 4 ranks (at 4 there are fewer KV heads than ranks: each KV head lives on two), and a Qwen3
(per-head q/k norms) with one KV head (replicated on both ranks), q/k/v and o_proj biases (o_proj's
added once, after the all-reduce) and a vocabulary of 323 that does not divide by 2 (the last
rank's range is shorter); and a Phi-3 (q/k/v and gate/up stored fused, partial rotary) at 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_tiny_model
from engine_reference import engine_config, generate_greedy, make_prompts
from model_family_checks import ATOL, PROMPT, logits_trace, run_rows

from berth_runtime.engine.builder import BuiltEngine, build_engine
from berth_runtime.engine.sequence import Sequence
from berth_runtime.sampling_params import SamplingParams

DECODE_STEPS = 6
MAX_NEW = 8
SETTINGS: dict[str, object] = {
    "enable_prefix_caching": True,
    "max_num_batched_tokens": 7,  # chunked prefill
    "max_model_len": 48,
    "kv_cache_blocks": 14,  # 4-token blocks; one 48-token sequence needs 12: preemption
    "speculative_method": "ngram",
    "num_speculative_tokens": 3,
}


@pytest.fixture(scope="module")
def tiny_phi3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phi-3: q/k/v and gate/up fused in the checkpoint (each rank reads its rows of each part),
    half the head rotated, longrope."""
    from transformers import Phi3Config, Phi3ForCausalLM

    return write_tiny_model(
        tmp_path_factory.mktemp("tiny-phi3"),
        Phi3Config,
        Phi3ForCausalLM,
        head_dim=16,
        pad_token_id=0,  # Phi3Config's default (32000) lies outside the tiny vocabulary
        original_max_position_embeddings=128,
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5,
            "short_factor": [1.0, 1.5, 2.5, 4.0],
            "long_factor": [2.0, 3.0, 5.0, 8.0],
        },
    )


@pytest.fixture(scope="module")
def odd_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return write_tiny_model(
        tmp_path_factory.mktemp("tiny-qwen3-mqa"),
        Qwen3Config,
        Qwen3ForCausalLM,
        head_dim=16,
        num_key_value_heads=1,
        vocab_size=323,
        attention_bias=True,
        tie_word_embeddings=True,
    )


def _build(model_dir: Path, tensor_parallel_size: int) -> BuiltEngine:
    return build_engine(engine_config(model_dir, tensor_parallel_size=tensor_parallel_size, **SETTINGS))


def _prompts() -> list[list[int]]:
    """Six prompts sharing a 20-token prefix (prefix-cache hits), with repeats n-gram speculation
    can draft from."""
    shared = make_prompts(1, vocab_size=320, seed=7, min_len=20, max_len=20)[0]
    tails = make_prompts(6, vocab_size=320, seed=8, min_len=2, max_len=12)
    return [shared + tail[1:] + shared[1:5] for tail in tails]


@pytest.mark.parametrize(
    ("model", "tensor_parallel_size"),
    [("llama", 2), ("llama", 4), ("qwen2", 2), ("qwen2", 4), ("odd_qwen3", 2), ("phi3", 2)],
)
def test_sharded_engine_equals_one_device(
    model: str, tensor_parallel_size: int, request: pytest.FixtureRequest
) -> None:
    model_dir = request.getfixturevalue(f"tiny_{model}_dir" if model != "odd_qwen3" else "odd_qwen3_dir")
    single = _build(model_dir, 1)
    expected_logits = logits_trace(single.engine, DECODE_STEPS)[0]
    expected_tokens = generate_greedy(single.engine, _prompts(), MAX_NEW)

    sharded = _build(model_dir, tensor_parallel_size)
    try:
        assert sharded.workers is not None and len(sharded.workers.processes) == tensor_parallel_size - 1
        logits = logits_trace(sharded.engine, DECODE_STEPS)[0]
        difference = float((logits - expected_logits).abs().max())
        print(f"{model} tp={tensor_parallel_size}: max |logit difference| {difference:.3g}")
        torch.testing.assert_close(logits, expected_logits, atol=ATOL, rtol=0)
        assert generate_greedy(sharded.engine, _prompts(), MAX_NEW) == expected_tokens
        stats = sharded.engine.stats()
        assert stats.prefix_cache_hits > 0
        assert stats.num_preemptions > 0
        assert stats.spec_decode_num_draft_tokens > 0
        assert sharded.engine.block_manager.num_free_blocks == SETTINGS["kv_cache_blocks"]
    finally:
        if sharded.workers is not None:
            sharded.workers.stop()
    assert all(process.exitcode == 0 for process in sharded.workers.processes)


def test_int8_quantizes_each_ranks_slices(tiny_llama_dir: Path) -> None:
    """--quantization runs after sharding: rank 0's linears are int8 at its slice's shapes, and the
    logits stay as close to the float model's as one device's int8 logits are (row-parallel layers
    get per-row scales over each rank's columns, so the two int8 models differ in rounding only)."""
    from berth_runtime.quantization import WeightOnlyLinear

    def first_logits(built: BuiltEngine) -> torch.Tensor:
        return run_rows(
            built.engine, [(Sequence("a", list(PROMPT), SamplingParams(), arrival=0), len(PROMPT))]
        )["a"]

    exact = first_logits(_build(tiny_llama_dir, 1))
    single = first_logits(build_engine(engine_config(tiny_llama_dir, quantization="int8", **SETTINGS)))
    sharded = build_engine(
        engine_config(tiny_llama_dir, quantization="int8", tensor_parallel_size=2, **SETTINGS)
    )
    try:
        layer = sharded.engine.runner.model.layers[0]  # type: ignore[attr-defined]
        assert isinstance(layer.o_proj, WeightOnlyLinear) and layer.o_proj.qweight.dtype == torch.int8
        assert (layer.o_proj.out_features, layer.o_proj.in_features) == (64, 2 * 16)  # 2 of 4 heads
        assert layer.gate_up_proj.out_features == 128  # half of gate, half of up
        logits = first_logits(sharded)
    finally:
        assert sharded.workers is not None
        sharded.workers.stop()
    error_single = float((single - exact).abs().max())
    error_sharded = float((logits - exact).abs().max())
    print(f"int8 max |logit error| vs float: one device {error_single:.3g}, tp=2 {error_sharded:.3g}")
    assert error_sharded <= 2 * error_single
    assert int(logits.argmax()) == int(exact.argmax())
