"""Shared helpers for the engine tests: reference greedy generation with `transformers`, prompts of
many lengths, and a synchronous way to run an `LLMEngine` to completion."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.outputs import RequestOutput
from berth_runtime.sampling_params import SamplingParams

BOS = 0


def make_prompts(
    count: int, vocab_size: int, seed: int = 1, min_len: int = 1, max_len: int = 40
) -> list[list[int]]:
    """`count` prompts of distinct lengths spread over min_len..max_len, each starting with BOS."""
    rng = random.Random(seed)
    lengths = [min_len + (index * (max_len - min_len)) // max(count - 1, 1) for index in range(count)]
    rng.shuffle(lengths)
    return [[BOS] + [rng.randrange(4, vocab_size) for _ in range(length - 1)] for length in lengths]


def reference_greedy(model_dir: Path, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuations by `transformers`, never stopping early (as with ignore_eos)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    results = []
    with torch.no_grad():
        for prompt in prompts:
            input_ids = torch.tensor([prompt])
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),  # BOS is id 0, which generate() takes for padding
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
            results.append(output[0, len(prompt) :].tolist())
    assert all(len(tokens) == max_new_tokens for tokens in results)
    return results


def engine_config(model_dir: Path, **overrides: object) -> RuntimeConfig:
    settings: dict[str, object] = {
        "model": str(model_dir),
        "dtype": "float32",
        "device": "cpu",
        "block_size": 4,
    }
    settings.update(overrides)
    return RuntimeConfig(**settings)  # type: ignore[arg-type]


def make_engine(model_dir: Path, **overrides: object) -> LLMEngine:
    return build_engine(engine_config(model_dir, **overrides)).engine


def greedy(max_tokens: int, **overrides: object) -> SamplingParams:
    settings: dict[str, object] = {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}
    settings.update(overrides)
    return SamplingParams(**settings)  # type: ignore[arg-type]


def run_to_completion(engine: LLMEngine, max_steps: int = 10_000) -> dict[str, list[RequestOutput]]:
    """Steps the engine until every request finished; all outputs, grouped by request id."""
    outputs: dict[str, list[RequestOutput]] = {}
    for _ in range(max_steps):
        if not engine.has_unfinished_requests():
            return outputs
        for output in engine.step():
            outputs.setdefault(output.request_id, []).append(output)
    raise AssertionError(f"the engine did not finish within {max_steps} steps")


def generated_tokens(outputs: list[RequestOutput]) -> list[int]:
    return [token for output in outputs for token in output.new_token_ids]


def generate_greedy(engine: LLMEngine, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Each prompt's greedy tokens, with all prompts submitted at once so the engine batches them."""
    for index, prompt in enumerate(prompts):
        engine.add_request(f"r{index}", prompt, greedy(max_tokens))
    outputs = run_to_completion(engine)
    return [generated_tokens(outputs[f"r{index}"]) for index in range(len(prompts))]
