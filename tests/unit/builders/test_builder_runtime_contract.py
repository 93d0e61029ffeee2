"""The other side of the CLI contract: berth_runtime's own parser accepts every command line the
operator renders, and reads back the values the spec asked for; every runtime flag is either one the
operator renders or one extraArgs may set, and extraArgs admits only values the parser reads. (Only
the parser: building the RuntimeConfig also checks the machine, e.g. that a CUDA device exists, which
no test box has.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api.model import PREQUANTIZED_FORMATS, SERVED_ARCHITECTURES, SERVED_GGUF_ARCHITECTURES
from berth_operator.api.runtime import (
    EXTRA_RUNTIME_FLAGS,
    MANAGED_RUNTIME_FLAGS,
    TENSOR_PARALLEL_ARCHITECTURES,
)
from berth_operator.builders import BuildContext
from berth_operator.builders.runtime_args import fetch_command, serve_command
from berth_runtime.cli import build_parser, option_strings
from berth_runtime.config import LOG_LEVELS
from berth_runtime.models import gguf_reader, prequantized, registry

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
            "extraArgs": ["--seed=7", "--log-level=debug"],
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
    assert config.max_num_seqs == spec.runtime.max_batch_size
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


def test_every_runtime_flag_is_either_rendered_or_settable_through_extra_args() -> None:
    # A new runtime flag must be added to one of the two tables, or extraArgs would refuse it.
    assert option_strings("serve") == set(MANAGED_RUNTIME_FLAGS) | set(EXTRA_RUNTIME_FLAGS)
    assert not set(MANAGED_RUNTIME_FLAGS) & set(EXTRA_RUNTIME_FLAGS)


@pytest.mark.parametrize(
    "argument",
    ["--seed=0", "--seed=-42", "--seed=123456789012345678", *(f"--log-level={lvl}" for lvl in LOG_LEVELS)],
)
def test_every_extra_argument_the_spec_admits_is_one_the_runtime_parses(
    make_context: ContextFactory, argument: str
) -> None:
    spec = make_context({"runtime": {"extraArgs": [argument]}}).spec
    parsed = vars(build_parser().parse_args(serve_command(spec)[3:]))
    flag, value = argument.removeprefix("--").split("=", 1)
    assert str(parsed[flag.replace("-", "_")]) == value


@pytest.mark.parametrize("argument", ["--seed=1.5", "--log-level=verbose", "--seed", "--por=9000"])
def test_what_the_spec_refuses_the_runtime_would_refuse_or_misread(argument: str) -> None:
    with pytest.raises(ValidationError):
        InferenceDeploymentSpec.model_validate(
            {"model": {"name": "m", "source": "hf://o/m"}, "runtime": {"extraArgs": [argument]}}
        )


def test_the_api_documents_what_the_runtime_serves() -> None:
    # the operator's descriptions name the runtime's architectures and formats, and no other
    assert SERVED_ARCHITECTURES == registry.SUPPORTED_ARCHITECTURES
    assert SERVED_GGUF_ARCHITECTURES == gguf_reader.SUPPORTED_GGUF_ARCHITECTURES
    assert PREQUANTIZED_FORMATS == prequantized.PREQUANTIZED_FORMATS
    sharded = {
        architecture
        for architecture, family in registry.ARCHITECTURES.items()
        if family.name in registry.TENSOR_PARALLEL_FAMILIES
    }
    assert set(TENSOR_PARALLEL_ARCHITECTURES) == sharded
