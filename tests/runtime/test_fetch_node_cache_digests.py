"""A download the source's own digest contradicts never becomes a trusted cache entry: a Hub LFS
file's identity is its SHA-256, so bytes that hash otherwise are removed and the fetch fails; the
next run downloads only that file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from berth_runtime.fetch import FetchError, fetch_through_cache, parse_source
from berth_runtime.fetch.cache_manifest import read_manifest
from berth_runtime.fetch.selection import RemoteFile, Snapshot
from berth_runtime.fetch.source import Source


class PublishedDigests:
    """A backend over a local model folder whose identities are SHA-256 digests, as the Hub's LFS
    files are; `corrupt` names a file whose downloads arrive with one byte flipped."""

    def __init__(self, model_dir: Path, corrupt: str | None, downloads: list[str]) -> None:
        self.model_dir, self.corrupt, self.downloads = model_dir, corrupt, downloads

    def snapshot(self) -> Snapshot:
        files = tuple(
            RemoteFile(path.name, path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(self.model_dir.iterdir())
        )
        return Snapshot(resolved_revision="0" * 40, files=files)

    def download(self, remote: RemoteFile, partial: Path) -> None:
        self.downloads.append(remote.path)
        content = bytearray((self.model_dir / remote.path).read_bytes())
        if remote.path == self.corrupt:
            content[-1] ^= 0x01
        partial.write_bytes(bytes(content))


def test_bytes_that_contradict_the_published_digest_are_refused_then_refetched(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    source = parse_source("hf://org/tiny@main", None)
    weights = next(path.name for path in tiny_llama_dir.glob("*.safetensors"))
    downloads: list[str] = []

    def corrupting(_: Source) -> PublishedDigests:
        return PublishedDigests(tiny_llama_dir, weights, downloads)

    with pytest.raises(FetchError, match=f"{weights}: the downloaded bytes do not hash to the SHA-256"):
        fetch_through_cache(source, tmp_path / "pod" / "model", tmp_path / "cache", make_backend=corrupting)
    entry = next((tmp_path / "cache" / "entries").iterdir())
    assert read_manifest(entry) is None and not (entry / weights).exists()

    downloads.clear()
    outcome = fetch_through_cache(
        source,
        tmp_path / "pod" / "model",
        tmp_path / "cache",
        make_backend=lambda _: PublishedDigests(tiny_llama_dir, None, downloads),
    )
    assert downloads == [weights] and outcome.cache_entry == entry
    assert (entry / weights).read_bytes() == (tiny_llama_dir / weights).read_bytes()
    assert read_manifest(entry) is not None
