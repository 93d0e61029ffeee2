"""On CUDA the engine's decode-only steps replay captured CUDA graphs (`engine.decode_graphs`, one
per batch bucket, padding rows included) and generate exactly the tokens of the same engine
stepping eagerly, with float32 and int8 weights, with speculative rows (eager) between replays.
Float32 activations: a padded bucket may pick another GEMM tiling than the eager batch, and bf16
rounding could then flip a near-tie without anything being wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from berth_runtime.engine.decode_graphs import DecodeGraphs
from berth_runtime.engine.speculation import NgramSpeculator
from berth_runtime.models.loader import load_model
from berth_runtime.quantization import quantize_linear_layers
from berth_runtime.speculative import NgramProposer

NEW_TOKENS = 24


def _prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(9)
    random = [[1, *torch.randint(3, 1024, (n,), generator=generator).tolist()] for n in (4, 19, 70)]
    return [*random, [1, *([5, 6, 7, 8] * 6)], [1, 300]]


@pytest.mark.parametrize("weights", ["float32", "int8"])
@pytest.mark.parametrize("speculative", [False, True])
def test_engine_with_captured_decode_graphs_generates_the_eager_tokens(
    tiny_llama_checkpoint: Path,
    engine_factory: Callable[..., object],
    greedy_tokens: Callable[..., list[list[int]]],
    weights: str,
    speculative: bool,
) -> None:
    model = load_model(tiny_llama_checkpoint, torch.float32, torch.device("cuda"), max_positions=1024)
    if weights == "int8":
        quantize_linear_layers(model, "int8")
    expected = greedy_tokens(engine_factory(model, torch.float32), _prompts(), NEW_TOKENS)

    engine = engine_factory(model, torch.float32)
    runner = engine.runner  # type: ignore[attr-defined]
    graphs = DecodeGraphs(model, runner.kv_caches, runner.block_size, 1024, 8, runner.device, capture=True)
    graphs.capture_all()
    runner.decode_graphs = graphs
    if speculative:
        engine.speculator = NgramSpeculator(NgramProposer(3), 1024)  # type: ignore[attr-defined]
    replays: list[int] = []
    run = graphs.run

    def counted_run(bucket: int, per_token: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        replays.append(bucket)
        return run(bucket, per_token, tables)

    graphs.run = counted_run  # type: ignore[method-assign]
    actual = greedy_tokens(engine, _prompts(), NEW_TOKENS)
    assert replays, "no decode step replayed a graph"
    assert actual == expected
