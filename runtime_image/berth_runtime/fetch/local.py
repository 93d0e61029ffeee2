"""Fetching from a directory on this machine: file:// paths and pvc:// claims mounted by the operator.

The model is copied into the destination rather than linked, so the destination behaves the same
for every source (marker, verification, resume) and the serving container never depends on how,
or whether, the claim stays mounted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.selection import RemoteFile, Snapshot
from berth_runtime.fetch.source import LocalSource

_CHUNK_BYTES = 8 * 1024 * 1024


class LocalBackend:
    """A local model directory; a file's identity is its size and modification time."""

    def __init__(self, source: LocalSource) -> None:
        self._source = source

    def snapshot(self) -> Snapshot:
        root = self._source.path
        if not root.exists():
            raise FetchError(f"404 Not Found: {self._source}: {root} does not exist (is the volume mounted?)")
        if not root.is_dir():
            raise FetchError(f"{self._source}: {root} is not a directory")
        try:
            files = tuple(
                RemoteFile(path=path.name, size=stat.st_size, identity=f"{stat.st_size}:{stat.st_mtime_ns}")
                for path in sorted(root.iterdir())
                if path.is_file()
                for stat in (path.stat(),)
            )
        except PermissionError as error:
            raise FetchError(f"403 Forbidden: {self._source}: cannot read {root}: {error}") from None
        fingerprint = max((file.identity.split(":")[1] for file in files), default="0")
        return Snapshot(resolved_revision=f"mtime-{fingerprint}", files=files)

    def download(self, remote: RemoteFile, partial: Path) -> None:
        """Copy the bytes of `remote` that `partial` does not hold yet."""
        resume_size = partial.stat().st_size if partial.exists() else 0
        try:
            with (self._source.path / remote.path).open("rb") as source, partial.open("ab") as target:
                source.seek(resume_size)
                shutil.copyfileobj(source, target, _CHUNK_BYTES)
        except PermissionError as error:
            raise FetchError(f"403 Forbidden: {self._source}: cannot read {remote.path}: {error}") from None
