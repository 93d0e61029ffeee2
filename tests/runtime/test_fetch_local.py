"""file:// and pvc:// fetches: copy, verify, mark; skip when complete; resume; drop stale files."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from berth_runtime.cli import main
from berth_runtime.fetch import FetchError, fetch, parse_source
from berth_runtime.fetch.selection import RemoteFile
from berth_runtime.fetch.state import MARKER_NAME, FileLedger, read_marker


def _model_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def test_file_source_is_copied_verified_and_marked(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "models" / "model"
    outcome = fetch(parse_source(f"file://{tiny_qwen2_dir}", "r1"), destination)
    assert not outcome.skipped
    copied = {name: data for name, data in _model_files(destination).items() if name != MARKER_NAME}
    assert copied == _model_files(tiny_qwen2_dir)
    marker = read_marker(destination)
    assert marker is not None
    assert marker.source == f"file://{tiny_qwen2_dir}"
    assert marker.revision == "r1"
    assert set(marker.files) == set(copied)


def test_second_fetch_of_the_same_revision_is_skipped(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    source = parse_source(f"file://{tiny_qwen2_dir}", "r1")
    fetch(source, tmp_path / "model")
    assert fetch(source, tmp_path / "model").skipped


def test_another_revision_is_fetched_again(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    fetch(parse_source(f"file://{tiny_qwen2_dir}", "r1"), tmp_path / "model")
    outcome = fetch(parse_source(f"file://{tiny_qwen2_dir}", "r2"), tmp_path / "model")
    assert not outcome.skipped
    assert set(outcome.reused) == set(_model_files(tiny_qwen2_dir)), "unchanged files are not copied again"
    assert read_marker(tmp_path / "model").revision == "r2"  # type: ignore[union-attr]


def test_a_deleted_file_invalidates_the_marker(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    source = parse_source(f"file://{tiny_qwen2_dir}", None)
    fetch(source, tmp_path / "model")
    (tmp_path / "model" / "tokenizer.json").unlink()
    outcome = fetch(source, tmp_path / "model")
    assert not outcome.skipped
    assert outcome.downloaded == ("tokenizer.json",)


def marked_prefix(data: bytes) -> bytes:
    """The first half of a safetensors file with a few tensor bytes flipped.

    A resumed download keeps these bytes (and still verifies: the header is intact), a restarted
    one replaces them; comparing the result tells which happened.
    """
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    half = len(data) // 2
    assert header_end + 16 < half, "the test needs tensor bytes in the first half"
    flipped = bytes(byte ^ 0xFF for byte in data[header_end : header_end + 16])
    return data[:header_end] + flipped + data[header_end + 16 : half]


def test_partial_file_is_resumed_not_restarted(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    source = parse_source(f"file://{tiny_qwen2_dir}", None)
    destination = tmp_path / "model"
    destination.mkdir()
    weights = sorted(tiny_qwen2_dir.glob("*.safetensors"))[0]
    stat = weights.stat()
    remote = RemoteFile(weights.name, stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}")
    partial = FileLedger(destination).partial_path(remote)
    partial.parent.mkdir(parents=True)
    original = weights.read_bytes()
    prefix = marked_prefix(original)
    partial.write_bytes(prefix)
    outcome = fetch(source, destination)
    assert weights.name in outcome.downloaded
    assert (destination / weights.name).read_bytes() == prefix + original[len(prefix) :]
    assert not partial.exists()


def test_model_files_of_an_earlier_revision_are_removed(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "model-old.safetensors").write_bytes(b"stale")
    (destination / "notes.md").write_text("kept: not a model file")
    fetch(parse_source(f"file://{tiny_qwen2_dir}", None), destination)
    assert not (destination / "model-old.safetensors").exists()
    assert (destination / "notes.md").exists()


def test_pvc_source_reads_the_claim_mount(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    mount_root = tmp_path / "pvc"
    shutil.copytree(tiny_qwen2_dir, mount_root / "claim" / "qwen")
    source = parse_source("pvc://claim/qwen", None, pvc_mount_root=mount_root)
    fetch(source, tmp_path / "model")
    assert (tmp_path / "model" / "config.json").read_bytes() == (tiny_qwen2_dir / "config.json").read_bytes()


def test_missing_source_directory_is_a_404(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"404 Not Found.*does not exist"):
        fetch(parse_source(f"file://{tmp_path}/absent", None), tmp_path / "model")


def test_a_directory_without_a_model_fails_verification_and_leaves_no_marker(tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    (source_dir / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(FetchError, match=r"no tokenizer\.json|no \*\.safetensors"):
        fetch(parse_source(f"file://{source_dir}", None), tmp_path / "model")
    assert not (tmp_path / "model" / MARKER_NAME).exists()


def test_cli_fetch_exit_status_and_message(
    tiny_qwen2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", f"file://{tiny_qwen2_dir}", str(tmp_path / "model")]) == 0
    assert "complete" in capsys.readouterr().err
    assert main(["fetch", f"file://{tiny_qwen2_dir}", str(tmp_path / "model")]) == 0
    assert "already complete" in capsys.readouterr().err
    assert main(["fetch", "gs://bucket/model", str(tmp_path / "other")]) == 1
    assert "unknown scheme 'gs'" in capsys.readouterr().err
