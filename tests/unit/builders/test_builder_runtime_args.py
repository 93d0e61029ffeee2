"""The rendered runtime command lines follow the runtime CLI contract (runtime_image/README.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from berth_operator.builders import BuildContext
from berth_operator.builders.runtime_args import fetch_command, model_path, serve_command

ContextFactory = Callable[..., BuildContext]


def _flags(command: list[str]) -> dict[str, str | None]:
    """`--flag value` pairs and bare `--flag` switches of a command line."""
    flags: dict[str, str | None] = {}
    arguments = command[4:]  # python -m berth_runtime serve
    for index, argument in enumerate(arguments):
        if argument.startswith("--"):
            following = arguments[index + 1] if index + 1 < len(arguments) else None
            flags[argument] = None if following is None or following.startswith("--") else following
    return flags


def test_minimal_spec_renders_every_controlled_flag(make_context: ContextFactory) -> None:
    command = serve_command(make_context().spec)
    assert command[:4] == ["python", "-m", "berth_runtime", "serve"]
    assert _flags(command) == {
        "--model": "/models/model",
        "--served-model-name": "chat-model",
        "--host": "0.0.0.0",
        "--port": "8000",
        "--metrics-port": "8001",
        "--device": "cuda",
        "--dtype": "bfloat16",
        "--quantization": "none",
        "--max-num-seqs": "64",
        "--max-num-batched-tokens": "2048",
        "--max-queue": "256",
        "--block-size": "16",
        "--speculative-method": "none",
        "--tensor-parallel-size": "1",
        "--drain-timeout": "30",
        "--warmup-prompts": "1",
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"model": {"maxModelLen": 8192}}, {"--max-model-len": "8192"}),
        (
            {"model": {"dtype": "float16", "quantization": "fp8"}},
            {"--dtype": "float16", "--quantization": "fp8"},
        ),
        ({"runtime": {"kvCache": {"gpuMemoryUtilization": 0.85}}}, {"--gpu-memory-utilization": "0.85"}),
        (
            {"runtime": {"kvCache": {"blocks": 4096, "blockSize": 32}}},
            {"--kv-cache-blocks": "4096", "--block-size": "32"},
        ),
        ({"runtime": {"kvCache": {"prefixCaching": True}}}, {"--enable-prefix-caching": None}),
        (
            {"runtime": {"speculative": {"method": "ngram", "numTokens": 4}}},
            {"--speculative-method": "ngram", "--num-speculative-tokens": "4"},
        ),
        (
            {"runtime": {"tensorParallelSize": 2}, "resources": {"gpu": {"count": 2}}},
            {"--tensor-parallel-size": "2"},
        ),
        (
            {"runtime": {"warmup": {"prompts": 3}, "maxQueue": 10}},
            {"--warmup-prompts": "3", "--max-queue": "10"},
        ),
        ({"serving": {"port": 9000, "metricsPort": 9001}}, {"--port": "9000", "--metrics-port": "9001"}),
        ({"serving": {"drainTimeoutSeconds": 90}}, {"--drain-timeout": "90"}),
        (
            {"serving": {"apiKeySecretRef": {"name": "keys", "key": "token"}}},
            {"--api-key-file": "/etc/berth/api-key/token"},
        ),
        (
            {"model": {"source": "pvc://weights/llama/8b", "revision": None}},
            {"--model": "/mnt/pvc/weights/llama/8b"},
        ),
        ({"model": {"source": "pvc://weights", "revision": None}}, {"--model": "/mnt/pvc/weights"}),
        ({"model": {"source": "file:///opt/models/tiny", "revision": None}}, {"--model": "/opt/models/tiny"}),
    ],
)
def test_spec_fields_render_their_flags(
    make_context: ContextFactory, overrides: dict[str, Any], expected: dict[str, str | None]
) -> None:
    flags = _flags(serve_command(make_context(overrides).spec))
    assert {flag: flags.get(flag, "<missing>") for flag in expected} == expected


def test_optional_flags_are_left_out_when_unset(make_context: ContextFactory) -> None:
    flags = _flags(serve_command(make_context().spec))
    for flag in (
        "--max-model-len",
        "--kv-cache-blocks",
        "--gpu-memory-utilization",
        "--enable-prefix-caching",
        "--num-speculative-tokens",
        "--api-key-file",
    ):
        assert flag not in flags


def test_extra_args_come_last_and_verbatim(make_context: ContextFactory) -> None:
    command = serve_command(make_context({"runtime": {"extraArgs": ["--seed=7", "--log-level=debug"]}}).spec)
    assert command[-2:] == ["--seed=7", "--log-level=debug"]


def test_fetch_command_passes_source_destination_and_revision(make_context: ContextFactory) -> None:
    spec = make_context().spec
    assert fetch_command(spec) == [
        "python", "-m", "berth_runtime", "fetch", "hf://org/chat", "/models/model", "--revision", "abc123",
    ]  # fmt: skip
    s3 = make_context({"model": {"source": "s3://bucket/models/chat", "revision": None}}).spec
    assert fetch_command(s3) == [
        "python",
        "-m",
        "berth_runtime",
        "fetch",
        "s3://bucket/models/chat",
        "/models/model",
    ]
    assert model_path(s3) == "/models/model"
