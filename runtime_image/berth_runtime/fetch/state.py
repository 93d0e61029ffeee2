"""What the fetcher remembers in the destination directory between runs.

Two things live beside the model files:
- the completion marker `.berth-fetch-complete.json`, written last and atomically, so its presence
  proves that the destination holds a verified model of that source and revision (a restarted
  init container then exits at once);
- `.berth-fetch/`: the identity of each finished file and the partial downloads, named by the
  identity of the content they belong to, so an interrupted download resumes where it stopped and
  never appends bytes of a changed object.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth_runtime.fetch.selection import RemoteFile

MARKER_NAME = ".berth-fetch-complete.json"
STATE_DIR_NAME = ".berth-fetch"


@dataclass(frozen=True)
class CompletionMarker:
    """The record of a finished fetch."""

    source: str
    revision: str | None
    resolved_revision: str
    files: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "revision": self.revision,
            "resolved_revision": self.resolved_revision,
            "files": self.files,
        }


def write_atomically(path: Path, content: str) -> None:
    """Write `content` so that readers see either the old file or the whole new one."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_marker(destination: Path) -> CompletionMarker | None:
    """The completion marker, or None when there is none or it cannot be read."""
    try:
        raw = json.loads((destination / MARKER_NAME).read_text(encoding="utf-8"))
        return CompletionMarker(
            source=str(raw["source"]),
            revision=None if raw["revision"] is None else str(raw["revision"]),
            resolved_revision=str(raw["resolved_revision"]),
            files={str(name): int(size) for name, size in raw["files"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def marker_is_satisfied(destination: Path, source: str, revision: str | None) -> bool:
    """True when a previous fetch of this source and revision completed and its files are still there."""
    marker = read_marker(destination)
    if marker is None or marker.source != source or marker.revision != revision:
        return False
    for name, size in marker.files.items():
        path = destination / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def write_marker(destination: Path, marker: CompletionMarker) -> None:
    write_atomically(destination / MARKER_NAME, json.dumps(marker.to_json(), indent=2, sort_keys=True))


def remove_marker(destination: Path) -> None:
    (destination / MARKER_NAME).unlink(missing_ok=True)


class FileLedger:
    """The identities of finished files, persisted after each one so a restart skips them."""

    def __init__(self, destination: Path) -> None:
        self._state_dir = destination / STATE_DIR_NAME
        self._path = self._state_dir / "files.json"
        self._lock = threading.Lock()
        self._state_dir.mkdir(parents=True, exist_ok=True)
        try:
            loaded = json.loads(self._path.read_text(encoding="utf-8"))
            self._identities: dict[str, str] = {str(k): str(v) for k, v in loaded.items()}
        except (OSError, ValueError, AttributeError):
            self._identities = {}

    def is_current(self, destination: Path, remote: RemoteFile) -> bool:
        """The file on disk is the finished download of exactly this remote content."""
        path = destination / remote.path
        with self._lock:
            recorded = self._identities.get(remote.path)
        return recorded == remote.identity and path.is_file() and path.stat().st_size == remote.size

    def record(self, remote: RemoteFile) -> None:
        with self._lock:
            self._identities[remote.path] = remote.identity
            write_atomically(self._path, json.dumps(self._identities, indent=2, sort_keys=True))

    def forget(self, path: str) -> None:
        """Drop a finished file's identity (it failed verification), so the next fill fetches it again."""
        with self._lock:
            if self._identities.pop(path, None) is not None:
                write_atomically(self._path, json.dumps(self._identities, indent=2, sort_keys=True))

    def partial_path(self, remote: RemoteFile) -> Path:
        """Where the unfinished bytes of this exact content are kept."""
        digest = hashlib.sha256(f"{remote.path}\0{remote.identity}".encode()).hexdigest()[:24]
        return self._state_dir / "partial" / f"{digest}.partial"
