"""The cache's command-line side: `fetch --cache-root/--cache-budget-bytes`, the root hand-over that
the operator's prepare-model-cache init container runs (`python -m berth_runtime.fetch.cache_root`)
and the wrapper the runtime container's server starts through (`python -m berth_runtime.fetch.hold_entry`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from berth_runtime.cli import main
from berth_runtime.fetch.cache_root import hand_over
from berth_runtime.fetch.cache_root import main as cache_root_main


@pytest.mark.parametrize(
    "extra",
    [["--cache-budget-bytes", "1000"], ["--cache-root", "/cache", "--cache-budget-bytes", "0"]],
    ids=["budget without a root", "zero budget"],
)
def test_a_budget_needs_a_root_and_must_be_positive(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "hf://org/name", str(tmp_path / "model"), *extra]) == 2
    error = capsys.readouterr().err
    assert "--cache-budget-bytes" in error and "positive number of bytes together with --cache-root" in error
    assert not (tmp_path / "model").exists()


def test_the_cache_root_is_handed_to_the_fetch_user(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("changing a folder's owner needs root (the prepare-model-cache container runs as root)")
    root = tmp_path / "var" / "cache" / "berth-models"
    assert hand_over(root, 65532)
    status = root.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (65532, 65532, 0o755)
    assert not hand_over(root, 65532), "a root that already belongs to the user is left alone"


@pytest.mark.parametrize("argv", [[], ["relative/path", "65532"], ["/cache", "nobody"]])
def test_the_hand_over_refuses_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_root_main(argv) == 2
    assert "usage: python -m berth_runtime.fetch.cache_root ROOT UID" in capsys.readouterr().err


def hold_entry(link: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "berth_runtime.fetch.hold_entry", str(link), "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_outside_a_cache_the_command_runs_as_it_is(tmp_path: Path) -> None:
    ran = hold_entry(tmp_path / "model", sys.executable, "-c", "print('served'); raise SystemExit(3)")
    assert (ran.returncode, ran.stdout) == (3, "served\n")


def test_an_evicted_entry_stops_the_server_with_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "locks").mkdir(parents=True)
    (root / "locks" / "gone-0123.users").touch()
    link = tmp_path / "pod" / "model"
    link.parent.mkdir()
    link.symlink_to(root / "entries" / "gone-0123")
    ran = hold_entry(link, sys.executable, "-c", "print('served')")
    assert ran.returncode == 1 and ran.stdout == ""
    assert "the cache entry was evicted; delete the pod so that its fetch runs again" in ran.stderr
