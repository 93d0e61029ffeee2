"""The kernel-backed layer ops are drop-in replacements for ``berth_runtime.layers``: the engine,
with the model's numeric steps swapped for them, generates the reference engine's greedy tokens
(chunked prefill over cached prefixes and batched decodes included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_reference import generate_greedy, make_engine

from berth_runtime.kernels import layer_ops
from berth_runtime.kernels._launch import runs_interpreted
from berth_runtime.kernels.rms_norm import _rms_norm_kernel
from berth_runtime.models import llama


def _counted(op: Callable[..., Any], name: str, calls: dict[str, int]) -> Callable[..., Any]:
    def counted(*args: Any) -> Any:
        calls[name] += 1
        return op(*args)

    return counted


def _greedy_tokens(model_dir: Path, dtype: str, prompts: list[list[int]]) -> list[list[int]]:
    engine = make_engine(
        model_dir,
        dtype=dtype,
        kv_cache_blocks=128,
        max_num_batched_tokens=24,  # forces chunked prefill over already-cached tokens
        enable_prefix_caching=True,
    )
    return generate_greedy(engine, prompts, 8)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_engine_on_kernel_ops_generates_the_reference_tokens(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    if not runs_interpreted(_rms_norm_kernel):
        pytest.skip("runs the kernels on the CPU: needs TRITON_INTERPRET=1 (scripts/test.sh sets it)")
    generator = torch.Generator().manual_seed(5)
    shared_prefix = torch.randint(5, 300, (9,), generator=generator).tolist()
    prompts = [
        [1, *shared_prefix, *torch.randint(5, 300, (length,), generator=generator).tolist()]
        for length in (2, 7, 30)
    ] + [[1, 42]]
    expected = _greedy_tokens(tiny_llama_dir, dtype, prompts)
    calls = dict.fromkeys(layer_ops.KERNEL_OPS_BY_LAYER_NAME, 0)
    for name, op in layer_ops.KERNEL_OPS_BY_LAYER_NAME.items():
        monkeypatch.setattr(llama, name, _counted(op, name, calls))
    actual = _greedy_tokens(tiny_llama_dir, dtype, prompts)
    assert all(count > 0 for count in calls.values()), calls  # every swapped op really ran
    assert all(len(tokens) == 8 for tokens in actual)
    assert actual == expected


def test_tensors_no_kernel_can_take_use_the_reference_layers() -> None:
    """Meta tensors stand for a device without kernels: the reference op runs (the kernel would refuse)."""
    hidden = torch.empty(3, 8, device="meta")
    weight = torch.empty(8, device="meta")
    normed, summed = layer_ops.add_rms_norm_op(hidden, hidden, weight, 1e-6)
    assert normed.device.type == "meta" and summed.shape == (3, 8)
    assert layer_ops.silu_and_mul_op(torch.empty(2, 8, device="meta")).shape == (2, 4)
