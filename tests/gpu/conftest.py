"""GPU tests: every test here is marked ``gpu`` and skipped cleanly unless a CUDA device is present
and Triton compiles natively (``TRITON_INTERPRET`` unset). ``scripts/gpu-check.sh`` runs them.

Fixtures: ``tiny_llama_checkpoint`` (a random-weight Llama written by transformers, no tokenizer:
the engine is driven with token ids), ``engine_factory`` (builds berth's ``LLMEngine`` around a
loaded model, the way ``engine.builder`` does, minus the tokenizer) and ``greedy_tokens`` (runs such
an engine on a batch of prompts to the end).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

GPU_DIR = Path(__file__).parent


def _skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device (torch.cuda.is_available() is False)"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "TRITON_INTERPRET=1 runs kernels on the host; run scripts/gpu-check.sh for native GPU tests"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if GPU_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_llama_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GQA 8/2 heads, head_dim 64, 3 layers, untied head, initializer 0.2 (well-separated logits)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("gpu-tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def engine_factory() -> Callable[..., object]:
    from berth_runtime.engine.block_manager import BlockManager
    from berth_runtime.engine.llm_engine import LLMEngine
    from berth_runtime.engine.model_runner import ModelRunner, allocate_kv_caches
    from berth_runtime.engine.scheduler import Scheduler

    def build(
        model: torch.nn.Module, dtype: torch.dtype, num_blocks: int = 512, block_size: int = 16
    ) -> LLMEngine:
        device = torch.device("cuda")
        kv_caches = allocate_kv_caches(model, num_blocks, block_size, dtype, device)  # type: ignore[arg-type]
        scheduler = Scheduler(BlockManager(num_blocks, block_size, False), 64, 2048)
        runner = ModelRunner(model, kv_caches, block_size, device)  # type: ignore[arg-type]
        return LLMEngine(runner, scheduler, None, (), 1024, seed=0)

    return build


@pytest.fixture
def greedy_tokens() -> Callable[[object, list[list[int]], int], list[list[int]]]:
    """Each prompt's greedy tokens from an engine, all prompts submitted at once so it batches them."""
    from berth_runtime.sampling_params import SamplingParams

    def generate(engine: object, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        for index, prompt in enumerate(prompts):
            engine.add_request(str(index), prompt, params)  # type: ignore[attr-defined]
        tokens: dict[str, list[int]] = {str(index): [] for index in range(len(prompts))}
        while engine.has_unfinished_requests():  # type: ignore[attr-defined]
            for output in engine.step():  # type: ignore[attr-defined]
                tokens[output.request_id] += output.new_token_ids
        return [tokens[str(index)] for index in range(len(prompts))]

    return generate
