"""`--quantization int8|fp8` through the whole engine: the built model's linears are weight-only
quantized, it generates, and its next-token logits track the full-precision engine's within the
thresholds `test_quantization_quality` states (cosine mean/min, top-1 agreement), teacher-forced on
the full-precision engine's greedy continuations so every position compares the same context. The
checkpoint has the quality test's shapes and default initialisation, the conditions its thresholds
were measured under (the narrower `tiny_llama_dir`, with 5x wider init, is not)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_tiny_model
from engine_reference import generated_tokens, greedy, make_engine, make_prompts, run_to_completion
from test_quantization_quality import THRESHOLDS

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.model_runner import StepResult
from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.quantization import WeightOnlyLinear

MAX_NEW = 8


@pytest.fixture(scope="module")
def quality_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    return write_tiny_model(
        tmp_path_factory.mktemp("quality-llama"),
        LlamaConfig,
        LlamaForCausalLM,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        initializer_range=0.02,
        tie_word_embeddings=False,
    )


def capture_logits(engine: LLMEngine) -> dict[str, list[torch.Tensor]]:
    """Records, per request id, the logits of every token it samples."""
    captured: dict[str, list[torch.Tensor]] = {}
    run = engine.runner.run

    def recording_run(rows: list[ScheduledRow]) -> StepResult:
        result = run(rows)
        for seq, logits in zip(result.sampling_seqs, result.logits, strict=True):
            captured.setdefault(seq.request_id, []).append(logits.clone())
        return result

    engine.runner.run = recording_run  # type: ignore[method-assign]
    return captured


@pytest.mark.parametrize("method", ["int8", "fp8"])
def test_quantized_engine_generates_and_tracks_full_precision_logits(
    quality_llama_dir: Path, method: str
) -> None:
    prompts = make_prompts(6, vocab_size=320, seed=3, min_len=4, max_len=30)
    full = make_engine(quality_llama_dir)
    full_logits = capture_logits(full)
    for index, prompt in enumerate(prompts):
        full.add_request(f"r{index}", prompt, greedy(MAX_NEW))
    continuations = {
        request_id: generated_tokens(outputs) for request_id, outputs in run_to_completion(full).items()
    }

    quantized = make_engine(quality_llama_dir, quantization=method)
    layer = quantized.runner.model.layers[0]
    assert isinstance(layer.qkv_proj, WeightOnlyLinear) and isinstance(layer.down_proj, WeightOnlyLinear)
    quantized_logits = capture_logits(quantized)
    for index, prompt in enumerate(prompts):
        continuation = continuations[f"r{index}"]
        assert len(continuation) == MAX_NEW
        for step in range(MAX_NEW):
            quantized.add_request(f"r{index}.{step}", prompt + continuation[:step], greedy(1))
    outputs = run_to_completion(quantized)
    assert all(len(generated_tokens(stream)) == 1 for stream in outputs.values())

    expected = torch.stack([logits for index in range(len(prompts)) for logits in full_logits[f"r{index}"]])
    actual = torch.stack(
        [quantized_logits[f"r{index}.{step}"][0] for index in range(len(prompts)) for step in range(MAX_NEW)]
    )
    assert not torch.equal(actual, expected)  # the quantized weights are really in use
    cosine = torch.nn.functional.cosine_similarity(actual, expected, dim=-1)
    top1 = (actual.argmax(-1) == expected.argmax(-1)).float().mean().item()
    limits = THRESHOLDS[method]
    assert cosine.mean().item() >= limits["cosine_mean"], f"{method}: mean cosine {cosine.mean():.5f}"
    assert cosine.min().item() >= limits["cosine_min"], f"{method}: min cosine {cosine.min():.5f}"
    assert top1 >= limits["top1"], f"{method}: top-1 agreement {top1:.3f}"
