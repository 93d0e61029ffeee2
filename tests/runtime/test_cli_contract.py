"""The serve CLI as a contract: the README's flag table, the operator's rendered command, bad input."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth_runtime.cli import build_parser, config_from_args, main, option_strings
from berth_runtime.config import RuntimeConfig

REPOSITORY = Path(__file__).resolve().parents[2]
README = REPOSITORY / "runtime_image" / "README.md"


def serve_actions() -> dict[str, argparse.Action]:
    """Every long flag of `serve` -> its action (a renamed flag's two names -> the same action)."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = subparsers.choices["serve"]
    return {
        flag: action
        for action in serve._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


def readme_table() -> dict[str, tuple[str, str]]:
    """flag -> (type column, default column) from the serve table of the runtime README."""
    section = README.read_text().split("## `python -m berth_runtime serve`", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = re.match(r"^\| (--[a-z-]+) \| (.*?) \| (.*?) \|", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def documented_default(flag: str, column: str) -> Any:
    """The README's default as the value RuntimeConfig ends up with (None where it is derived)."""
    derived = {"—", "basename of --model", "cuda if available else cpu", "model's max_position_embeddings"}
    if column in derived:
        return None
    if column in ("off", "none"):
        return False if flag == "--enable-prefix-caching" else ("none" if flag != "--api-key-file" else None)
    first = column.split()[0]
    try:
        return int(first)
    except ValueError:
        pass
    try:
        return float(first)
    except ValueError:
        return first


def test_readme_table_and_parser_list_the_same_flags() -> None:
    assert set(readme_table()) == set(serve_actions())


def test_option_strings_for_serve_are_the_readme_table() -> None:
    """What the operator's contract test reads is the documented flag table, flag for flag."""
    assert option_strings("serve") == set(readme_table())


def test_readme_defaults_are_what_the_runtime_uses(tmp_path: Path) -> None:
    config = config_from_args(
        build_parser().parse_args(["serve", "--model", str(tmp_path), "--device", "cpu"])
    )
    effective = {
        "gpu_memory_utilization": config.effective_gpu_memory_utilization,
        "served_model_name": None,
        "device": None,
        "model": None,
    }
    actions = serve_actions()
    for flag, (_, default_column) in readme_table().items():
        field = actions[flag].dest
        actual = effective.get(field, getattr(config, field))
        assert actual == documented_default(flag, default_column), flag


def test_readme_choices_match_the_parser() -> None:
    actions = serve_actions()
    for flag, (type_column, _) in readme_table().items():
        if "\\|" in type_column:
            documented = type_column.replace("\\|", "|").split("|")
            assert list(actions[flag].choices or []) == documented, flag


def test_the_operators_rendered_command_parses_to_the_spec(tmp_path: Path) -> None:
    from berth_operator.api import InferenceDeploymentSpec
    from berth_operator.builders.runtime_args import serve_command

    manifest = yaml.safe_load((REPOSITORY / "examples" / "chat.yaml").read_text())
    spec = InferenceDeploymentSpec.model_validate(manifest["spec"])
    command = serve_command(spec)
    assert command[:4] == ["python", "-m", "berth_runtime", "serve"]
    arguments = build_parser().parse_args(command[3:])
    assert arguments.served_model_name == spec.model.name
    assert arguments.port == spec.serving.port
    assert arguments.dtype == spec.model.dtype
    assert arguments.max_model_len == spec.model.max_model_len
    assert arguments.max_num_seqs == spec.runtime.max_batch_size
    assert arguments.block_size == spec.runtime.kv_cache.block_size
    assert arguments.enable_prefix_caching is spec.runtime.kv_cache.prefix_caching
    assert arguments.gpu_memory_utilization == spec.runtime.kv_cache.gpu_memory_utilization
    assert arguments.speculative_method == spec.runtime.speculative.method
    assert arguments.warmup_prompts == spec.runtime.warmup.prompts


def test_every_flag_reaches_the_config(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    arguments = build_parser().parse_args(
        ["serve", "--model", str(tmp_path / "m"), "--served-model-name", "chat", "--host", "127.0.0.1",
         "--port", "9000", "--metrics-port", "9100", "--dtype", "float16", "--device", "cpu",
         "--max-model-len", "4096", "--max-num-seqs", "8", "--max-num-batched-tokens", "512",
         "--block-size", "32", "--kv-cache-blocks", "100", "--enable-prefix-caching", "--max-queue", "5",
         "--drain-timeout", "2.5", "--warmup-prompts", "3", "--api-key-file", str(key_file), "--seed", "7",
         "--log-level", "DEBUG"]
    )  # fmt: skip
    config = config_from_args(arguments)
    assert config == RuntimeConfig(
        model=str(tmp_path / "m"), served_model_name="chat", host="127.0.0.1", port=9000, metrics_port=9100,
        dtype="float16", device="cpu", max_model_len=4096, max_num_seqs=8, max_num_batched_tokens=512,
        block_size=32, kv_cache_blocks=100, enable_prefix_caching=True, max_queue=5, drain_timeout=2.5,
        warmup_prompts=3, api_key_file=str(key_file), seed=7, log_level="debug",
    )  # fmt: skip


@pytest.mark.parametrize("flag", ["--max-num-seqs", "--max-batch-size"])
def test_the_batch_limit_parses_under_its_vllm_name_and_its_former_one(flag: str, tmp_path: Path) -> None:
    arguments = build_parser().parse_args(["serve", "--model", str(tmp_path), f"{flag}=5"])
    assert config_from_args(arguments).max_num_seqs == 5
    assert {"--max-num-seqs", "--max-batch-size"} <= option_strings("serve")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "fp8"], "argument --dtype: invalid choice: 'fp8'"),
        (["--port", "http"], "argument --port: invalid int value: 'http'"),
        (["--kv-cache-blocks", "10", "--gpu-memory-utilization", "0.5"], "not allowed with argument"),
        (["--tensor-parallel-size", "0"], "invalid tensor_parallel_size=0"),
        (["--max-num-seqs", "0"], "invalid max_num_seqs=0"),
        (["--max-batch-size", "0"], "invalid max_num_seqs=0"),
        (["--warmup-prompts", "0"], "invalid warmup_prompts=0"),
        (["--gpu-memory-utilization", "1.5"], "invalid gpu_memory_utilization=1.5"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_serve_flags_exit_2_naming_the_flag(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["serve", "--model", str(tmp_path), "--device", "cpu", *extra])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_unreadable_api_key_file_stops_the_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    status = main(
        ["serve", "--model", str(tmp_path), "--device", "cpu", "--api-key-file", str(tmp_path / "absent")]
    )
    assert status == 2
    assert "invalid api_key_file=" in caplog.text and "cannot read it" in caplog.text
