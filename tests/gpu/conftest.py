"""GPU tests: every test here is marked ``gpu`` and skipped cleanly unless a CUDA device is present
and Triton compiles natively (``TRITON_INTERPRET`` unset). ``scripts/gpu-check.sh`` runs them.

Fixtures: ``tiny_llama_checkpoint`` (a random-weight Llama written by transformers, no tokenizer:
the engine is driven with token ids) and ``engine_factory`` (builds berth's ``LLMEngine`` around a
loaded model, the way ``engine.builder`` does, minus the tokenizer).
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
