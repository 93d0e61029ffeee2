"""The shared model cache against a real S3 endpoint (moto) that counts every object download: two
fetches at once download each file once, a rerun downloads nothing, a waiting fetch reuses what
the filler wrote, and a damaged file is found by its hash and fetched again (only that file)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_runtime.fetch import FetchError, fetch_through_cache, parse_source
from berth_runtime.fetch.cache_layout import CacheLayout, entry_key, locked
from berth_runtime.fetch.cache_manifest import MANIFEST_NAME, read_manifest
from berth_runtime.fetch.s3 import S3Backend
from berth_runtime.fetch.source import S3Source
from tests.runtime.counting_s3 import CountingS3, counting_s3_server, upload_model

BUCKET = "cached-models"
PREFIX = "qwen/tiny"
SOURCE = f"s3://{BUCKET}/{PREFIX}"
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[CountingS3]:
    with counting_s3_server() as server:
        yield server


@pytest.fixture
def uploaded(s3: CountingS3, tiny_qwen2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    for name, value in {
        "AWS_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return upload_model(s3.url, BUCKET, PREFIX, tiny_qwen2_dir)


def downloads(s3: CountingS3) -> dict[str, int]:
    """Object downloads so far, by file name."""
    return {key.removeprefix(f"{PREFIX}/"): count for key, count in s3.object_gets(BUCKET).items()}


def assert_is_the_model(destination: Path, uploaded: dict[str, bytes]) -> None:
    assert destination.is_symlink()
    for name, content in uploaded.items():
        assert (destination / name).read_bytes() == content, name


def run_fetch(destination: Path, cache_root: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "berth_runtime",
            "fetch",
            SOURCE,
            str(destination),
            "--cache-root",
            f"{cache_root}",
        ],
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_concurrent_fetches_download_each_file_once(
    s3: CountingS3, uploaded: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "object_delay_seconds", 0.5)  # the fill lasts long enough to overlap
    before = downloads(s3)
    pods = [run_fetch(tmp_path / f"pod-{index}" / "model", tmp_path / "node-cache") for index in (0, 1)]
    outputs = [pod.communicate(timeout=120)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], outputs
    fetched = {name: count - before.get(name, 0) for name, count in downloads(s3).items()}
    assert {name: count for name, count in fetched.items() if count} == dict.fromkeys(uploaded, 1)
    links = {(tmp_path / f"pod-{index}" / "model").resolve() for index in (0, 1)}
    assert len(links) == 1, "both pods use the same entry"
    for index in (0, 1):
        assert_is_the_model(tmp_path / f"pod-{index}" / "model", uploaded)
    assert sum("reusing the verified cache entry" in output for output in outputs) == 1, outputs


def test_a_second_run_downloads_nothing(s3: CountingS3, uploaded: dict[str, bytes], tmp_path: Path) -> None:
    source = parse_source(SOURCE, None)
    first = fetch_through_cache(source, tmp_path / "pod-a" / "model", tmp_path / "cache")
    after_fill = downloads(s3)
    second = fetch_through_cache(source, tmp_path / "pod-b" / "model", tmp_path / "cache")
    restarted = fetch_through_cache(source, tmp_path / "pod-a" / "model", tmp_path / "cache")
    assert not first.skipped and sorted(first.downloaded) == sorted(uploaded)
    assert second.skipped and restarted.skipped and second.downloaded == ()
    assert downloads(s3) == after_fill
    assert first.cache_entry == second.cache_entry == restarted.cache_entry
    assert_is_the_model(tmp_path / "pod-b" / "model", uploaded)


def test_a_fetch_waits_for_the_entry_lock_then_reuses(
    s3: CountingS3, uploaded: dict[str, bytes], tmp_path: Path
) -> None:
    source = parse_source(SOURCE, None)
    assert isinstance(source, S3Source)
    fetch_through_cache(source, tmp_path / "pod-a" / "model", tmp_path / "cache")
    after_fill = downloads(s3)
    key = entry_key(source, S3Backend(source).snapshot().resolved_revision)
    results: list[bool] = []
    with locked(CacheLayout(tmp_path / "cache").lock_file(key)):  # another pod is filling it
        waiting = threading.Thread(
            target=lambda: results.append(
                fetch_through_cache(source, tmp_path / "pod-b" / "model", tmp_path / "cache").skipped
            )
        )
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive() and not (tmp_path / "pod-b" / "model").exists()
    waiting.join(timeout=30)
    assert results == [True]
    assert downloads(s3) == after_fill
    assert_is_the_model(tmp_path / "pod-b" / "model", uploaded)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_damaged_file_is_detected_and_only_it_is_fetched_again(
    damage: str, s3: CountingS3, uploaded: dict[str, bytes], tmp_path: Path
) -> None:
    source = parse_source(SOURCE, None)
    entry = fetch_through_cache(source, tmp_path / "pod-a" / "model", tmp_path / "cache").cache_entry
    assert entry is not None
    shard = sorted(name for name in uploaded if name.endswith(".safetensors"))[-1]
    content = bytearray((entry / shard).read_bytes())
    if damage == "flipped byte":
        content[len(content) - 5] ^= 0x01  # tensor data: the safetensors header still parses
    else:
        del content[len(content) // 2 :]
    (entry / shard).write_bytes(bytes(content))
    before = downloads(s3)
    outcome = fetch_through_cache(source, tmp_path / "pod-b" / "model", tmp_path / "cache")
    assert not outcome.skipped and outcome.downloaded == (shard,)
    assert outcome.cache_entry == entry
    fetched = {name: count - before.get(name, 0) for name, count in downloads(s3).items()}
    assert {name: count for name, count in fetched.items() if count} == {shard: 1}
    assert_is_the_model(tmp_path / "pod-b" / "model", uploaded)
    manifest = read_manifest(entry)
    assert manifest is not None and manifest.files[shard].size == len(uploaded[shard])


def test_an_interrupted_fill_is_completed_without_downloading_finished_files(
    s3: CountingS3, uploaded: dict[str, bytes], tmp_path: Path
) -> None:
    source = parse_source(SOURCE, None)
    entry = fetch_through_cache(source, tmp_path / "pod-a" / "model", tmp_path / "cache").cache_entry
    assert entry is not None
    (entry / MANIFEST_NAME).unlink()  # killed after the downloads, before the manifest
    before = downloads(s3)
    outcome = fetch_through_cache(source, tmp_path / "pod-b" / "model", tmp_path / "cache")
    assert not outcome.skipped and outcome.downloaded == () and sorted(outcome.reused) == sorted(uploaded)
    assert downloads(s3) == before
    assert read_manifest(entry) is not None


def test_a_changed_object_is_a_new_entry(s3: CountingS3, uploaded: dict[str, bytes], tmp_path: Path) -> None:
    source = parse_source(SOURCE, None)
    old = fetch_through_cache(source, tmp_path / "pod-a" / "model", tmp_path / "cache").cache_entry
    changed = tmp_path / "changed"
    changed.mkdir()
    config = uploaded["config.json"].replace(b"{", b'{"changed": true, ', 1)
    (changed / "config.json").write_bytes(config)
    upload_model(s3.url, BUCKET, PREFIX, changed)
    try:
        new = fetch_through_cache(source, tmp_path / "pod-b" / "model", tmp_path / "cache")
        assert new.cache_entry != old and not new.skipped
        assert (tmp_path / "pod-b" / "model" / "config.json").read_bytes() == config
        assert old is not None and (old / "config.json").read_bytes() == uploaded["config.json"]
    finally:
        (changed / "config.json").write_bytes(uploaded["config.json"])
        upload_model(s3.url, BUCKET, PREFIX, changed)


def test_a_destination_that_is_a_folder_is_refused(uploaded: dict[str, bytes], tmp_path: Path) -> None:
    (tmp_path / "pod" / "model").mkdir(parents=True)
    with pytest.raises(FetchError, match=r"pod/model exists and is not a link into the model cache"):
        fetch_through_cache(parse_source(SOURCE, None), tmp_path / "pod" / "model", tmp_path / "cache")
