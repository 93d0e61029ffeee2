"""The other side of the CLI contract: berth_runtime's own parser accepts every command line the
operator renders, and reads back the values the spec asked for. (Only the parser: building the
RuntimeConfig also checks the machine, e.g. that a CUDA device exists, which no test box has.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from berth_operator.builders import BuildContext
from berth_operator.builders.runtime_args import fetch_command, serve_command
from berth_runtime.cli import build_parser

ContextFactory = Callable[..., BuildContext]

SPECS: list[dict[str, Any]] = [
    {},
    {
        "model": {"maxModelLen": 8192, "dtype": "float16"},
        "runtime": {
            "kvCache": {"gpuMemoryUtilization": 0.85, "prefixCaching": True, "blockSize": 32},
            "speculative": {"method": "ngram", "numTokens": 4},
            "warmup": {"prompts": 2},
            "maxQueue": 100,
            "extraArgs": ["--seed=7", "--log-level", "debug"],
        },
        "serving": {"apiKeySecretRef": {"name": "keys", "key": "token"}, "drainTimeoutSeconds": 45},
    },
    {"runtime": {"kvCache": {"blocks": 2048}}, "model": {"source": "pvc://weights/llama", "revision": None}},
]


@pytest.mark.parametrize("overrides", SPECS, ids=["minimal", "everything", "pvc-explicit-blocks"])
def test_runtime_parses_what_the_operator_renders(
    make_context: ContextFactory, overrides: dict[str, Any]
) -> None:
    spec = make_context(overrides).spec
    command = serve_command(spec)
    config = build_parser().parse_args(command[3:])  # after `python -m berth_runtime`
    assert config.command == "serve"
    assert config.device == "cuda"
    assert config.served_model_name == spec.model.name
    assert config.port == spec.serving.port
    assert config.metrics_port == spec.serving.metrics_port
    assert config.dtype == spec.model.dtype
    assert config.max_model_len == spec.model.max_model_len
    assert config.block_size == spec.runtime.kv_cache.block_size
    assert config.enable_prefix_caching == spec.runtime.kv_cache.prefix_caching
    assert config.speculative_method == spec.runtime.speculative.method
    assert config.max_queue == spec.runtime.max_queue
    assert config.warmup_prompts == spec.runtime.warmup.prompts
    assert config.drain_timeout == spec.serving.drain_timeout_seconds
    assert config.gpu_memory_utilization == spec.runtime.kv_cache.gpu_memory_utilization
    assert config.kv_cache_blocks == (spec.runtime.kv_cache.blocks or 0)
    assert config.num_speculative_tokens == (spec.runtime.speculative.num_tokens or 0)


def test_runtime_parses_the_fetch_command(make_context: ContextFactory) -> None:
    command = fetch_command(make_context().spec)
    arguments = build_parser().parse_args(command[3:])
    assert (arguments.command, arguments.source, str(arguments.destination), arguments.revision) == (
        "fetch",
        "hf://org/chat",
        "/models/model",
        "abc123",
    )
