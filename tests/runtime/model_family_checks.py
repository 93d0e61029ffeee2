"""The proof every model family gives (tests/runtime/test_model_family_*.py): a tiny random-weight
checkpoint written by `transformers`, whose logits through berth's engine path equal transformers'
at fp32 (a chunked prefill beside a running decode, then every decode step), and whose greedy tokens
under continuous batching with prefix-cache hits, chunked prefill and preemption equal
transformers' greedy tokens; and on the kernel path (what CUDA runs; the Triton interpreter on the
CPU) the same greedy tokens as on the reference path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_tiny_model
from engine_reference import generate_greedy, make_engine, make_prompts, reference_greedy
from transformers import AutoModelForCausalLM

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.engine.sequence import Sequence
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.rms_norm import _rms_norm_kernel
from berth_runtime.sampling_params import SamplingParams

ATOL = 1e-4
PROMPT = [0, 17, 94, 203, 5, 66, 311, 42, 8, 150, 77, 230, 19] * 2
"""26 tokens: longer than the small sliding windows the tiny Gemma checkpoints use."""
MAX_NEW = 8


def write_family_model(directory: Path, config_class: Any, model_class: Any, **overrides: Any) -> Path:
    """`conftest.write_tiny_model` with 16-wide heads (families whose defaults are wider)."""
    return write_tiny_model(directory, config_class, model_class, **{"head_dim": 16, **overrides})


def reference_logits(
    model_dir: Path, token_ids: list[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[len(token_ids), vocab] fp32 logits of the transformers model in `dtype` (eager attention: the
    one path every family's features run on)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")
    with torch.no_grad():
        return model.eval()(torch.tensor([token_ids])).logits[0].float()


def run_rows(engine: LLMEngine, rows: list[tuple[Sequence, int]]) -> dict[str, torch.Tensor]:
    """One step over `rows` (allocating their blocks); logits keyed by request id."""
    for seq, count in rows:
        assert engine.block_manager.allocate(seq, count)
    result = engine.runner.run([ScheduledRow(seq, count) for seq, count in rows])
    for seq, count in rows:
        seq.num_computed_tokens += count
    return {seq.request_id: logits for seq, logits in zip(result.sampling_seqs, result.logits, strict=True)}


def prefill_logits(model_dir: Path, dtype: str = "float32") -> torch.Tensor:
    """The engine's logits after PROMPT, prefilled in one step."""
    engine = make_engine(model_dir, dtype=dtype)
    return run_rows(engine, [(Sequence("a", list(PROMPT), SamplingParams(), arrival=0), len(PROMPT))])["a"]


def logits_trace(engine: LLMEngine, decode_steps: int) -> tuple[torch.Tensor, list[int]]:
    """PROMPT through the engine's runner in chunks of 10 (each step beside another sequence's
    decode), then `decode_steps` greedy decodes: the [1 + decode_steps, vocab] logits of those steps
    and the tokens they ran over. Frees the blocks it used."""
    seq = Sequence("a", list(PROMPT), SamplingParams(), arrival=0)
    other = Sequence("b", PROMPT[:5], SamplingParams(), arrival=0)
    run_rows(engine, [(other, 5)])
    for start in range(0, len(PROMPT) - 10, 10):
        other.token_ids.append(7 + start)
        run_rows(engine, [(seq, 10), (other, 1)])
    step_logits = [run_rows(engine, [(seq, len(PROMPT) % 10 or 10)])["a"]]
    for _ in range(decode_steps):
        seq.token_ids.append(int(step_logits[-1].argmax()))
        step_logits.append(run_rows(engine, [(seq, 1)])["a"])
    engine.block_manager.free(seq)
    engine.block_manager.free(other)
    return torch.stack(step_logits), list(seq.token_ids)


def max_logit_difference(model_dir: Path, decode_steps: int = 10, reference_dir: Path | None = None) -> float:
    """The engine's `logits_trace` on `model_dir`; asserts every row equals transformers' (on
    `reference_dir`, by default the same checkpoint) within ATOL and returns the largest difference."""
    ours, token_ids = logits_trace(make_engine(model_dir), decode_steps)
    # Row i of the reference is the prediction after token i: the prefill's is row len(PROMPT) - 1.
    expected = reference_logits(reference_dir or model_dir, token_ids)[len(PROMPT) - 1 :]
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    return float((ours - expected).abs().max())


def assert_greedy_matches_under_batching(model_dir: Path) -> None:
    """Prompts sharing a 20-token prefix, submitted together to an engine with prefix caching, a
    7-token step budget (chunked prefill) and a KV cache too small for all of them (preemption)."""
    shared = make_prompts(1, vocab_size=320, seed=7, min_len=20, max_len=20)[0]
    tails = make_prompts(6, vocab_size=320, seed=8, min_len=2, max_len=12)
    prompts = [shared + tail[1:] for tail in tails]
    expected = reference_greedy(model_dir, prompts, MAX_NEW)
    engine = make_engine(
        model_dir,
        enable_prefix_caching=True,
        max_num_batched_tokens=7,
        max_model_len=48,
        kv_cache_blocks=14,  # one 48-token sequence needs 12
    )
    assert generate_greedy(engine, prompts, MAX_NEW) == expected
    assert engine.stats().prefix_cache_hits > 0
    assert engine.stats().num_preemptions > 0
    assert engine.block_manager.num_free_blocks == 14


def assert_kernel_path_matches_the_reference_path(model_dir: Path, decode_graphs: bool) -> None:
    """Greedy tokens with the kernel layer ops (steps no kernel covers fall back to the reference) equal
    the reference path's; `decode_graphs`: whether the model may capture decode CUDA graphs."""
    if not runs_interpreted(_rms_norm_kernel):
        pytest.skip("runs the kernels on the CPU: needs TRITON_INTERPRET=1 (scripts/test.sh sets it)")
    prompts = make_prompts(3, vocab_size=320, seed=3, min_len=5, max_len=20)
    expected = generate_greedy(make_engine(model_dir, enable_prefix_caching=True), prompts, 6)
    engine = make_engine(model_dir, enable_prefix_caching=True)
    engine.runner.model.use_kernel_ops = True
    assert generate_greedy(engine, prompts, 6) == expected
    assert engine.runner.model.supports_decode_graphs is decode_graphs
