"""Only exact flags: an abbreviation of a managed flag must never reach the runtime as that flag.

The operator refuses a user's extra argument only when it repeats a rendered flag exactly, so an
abbreviation argparse would expand (`--por=9000` for `--port`) could silently override the port,
the model path, the API key file or the parallelism the operator chose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_runtime.cli import build_parser, option_strings


def serve_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["serve", "--model", str(tmp_path), "--device", "cpu", *extra]


def fetch_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["fetch", "hf://org/name", str(tmp_path / "model"), *extra]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Parse `argv`, which must fail with exit status 2; return the error output."""
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "abbreviation",
    [
        ["--por=9000"],
        ["--por", "9000"],
        ["--mode=/etc"],
        ["--api-key-fil=x"],
        ["--tensor-parallel=8"],
        ["--served-model=x"],
        ["--gpu-memory=0.1"],
    ],
)
def test_abbreviated_serve_flags_are_unrecognized(
    abbreviation: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = refused(serve_argv(tmp_path, *abbreviation), capsys)
    assert f"unrecognized arguments: {' '.join(abbreviation)}" in error


@pytest.mark.parametrize("abbreviation", [["--revis=x"], ["--revis", "x"], ["--pvc-mount=/etc"]])
def test_abbreviated_fetch_flags_are_unrecognized(
    abbreviation: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = refused(fetch_argv(tmp_path, *abbreviation), capsys)
    assert f"unrecognized arguments: {' '.join(abbreviation)}" in error


@pytest.mark.parametrize(
    ("command", "flag"),
    [("serve", flag) for flag in sorted(option_strings("serve"))]
    + [("fetch", flag) for flag in sorted(option_strings("fetch"))],
)
def test_every_flag_less_its_last_letter_is_unrecognized(
    command: str, flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    abbreviation = f"{flag[:-1]}=1"
    assert flag[:-1] not in option_strings(command)
    argv = serve_argv(tmp_path, abbreviation) if command == "serve" else fetch_argv(tmp_path, abbreviation)
    assert f"unrecognized arguments: {abbreviation}" in refused(argv, capsys)


def test_the_top_level_parser_refuses_an_abbreviated_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = refused(["--hel", *fetch_argv(tmp_path)], capsys)
    assert "unrecognized arguments: --hel" in error


def test_exact_flags_still_parse_in_both_spellings(tmp_path: Path) -> None:
    serve = build_parser().parse_args(serve_argv(tmp_path, "--port=9000", "--served-model-name", "chat"))
    assert (serve.port, serve.served_model_name) == (9000, "chat")
    fetch = build_parser().parse_args(fetch_argv(tmp_path, "--revision=v1"))
    assert fetch.revision == "v1"


def test_fetch_option_strings_are_its_flags() -> None:
    assert option_strings("fetch") == {
        "--revision",
        "--pvc-mount-root",
        "--cache-root",
        "--cache-budget-bytes",
        "--log-level",
    }


def test_serve_option_strings_include_grouped_flags_and_leave_out_help() -> None:
    flags = option_strings("serve")
    assert {"--model", "--port", "--api-key-file", "--tensor-parallel-size"} <= flags
    assert {"--kv-cache-blocks", "--gpu-memory-utilization"} <= flags
    assert not {"-h", "--help"} & flags
    assert all(flag.startswith("--") for flag in flags)


def test_option_strings_of_an_unknown_command_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown command 'convert'"):
        option_strings("convert")
