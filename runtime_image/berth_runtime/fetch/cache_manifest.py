"""The manifest of a shared cache entry: the proof, checked before every reuse, that it is intact.

A node cache outlives the pods that filled it: a disk error, a process killed by the OOM killer
mid-write, or a person "tidying up" the host folder can leave an entry that looks complete. So
after a fill the size and SHA-256 of every model file are recorded in `.berth-cache-manifest.json`,
written last and atomically (no manifest: the entry is not complete), and each later pod hashes the
files again before it uses them. A file that differs is named, removed and fetched again; the
others are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth_runtime.fetch.state import write_atomically

logger = logging.getLogger("berth_runtime.fetch")

MANIFEST_NAME = ".berth-cache-manifest.json"
MANIFEST_VERSION = 1
_HASH_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileRecord:
    size: int
    sha256: str


@dataclass(frozen=True)
class CacheManifest:
    """What a complete entry holds: its source, the revision it resolved to, and every file's record."""

    source: str
    resolved_revision: str
    files: dict[str, FileRecord]

    @property
    def total_bytes(self) -> int:
        return sum(record.size for record in self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "source": self.source,
            "resolved_revision": self.resolved_revision,
            "files": {
                name: {"size": record.size, "sha256": record.sha256} for name, record in self.files.items()
            },
        }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def record_files(entry: Path, names: list[str], max_workers: int = 4) -> dict[str, FileRecord]:
    """Size and SHA-256 of each named file of `entry` (hashed in parallel: hashlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(names)))) as pool:
        digests = list(pool.map(lambda name: sha256_of(entry / name), names))
    return {
        name: FileRecord(size=(entry / name).stat().st_size, sha256=digest)
        for name, digest in zip(names, digests, strict=True)
    }


def write_manifest(entry: Path, manifest: CacheManifest) -> None:
    write_atomically(entry / MANIFEST_NAME, json.dumps(manifest.to_json(), indent=2, sort_keys=True))


def remove_manifest(entry: Path) -> None:
    (entry / MANIFEST_NAME).unlink(missing_ok=True)


def read_manifest(entry: Path) -> CacheManifest | None:
    """The manifest, or None when there is none or it is not one this version wrote."""
    try:
        raw = json.loads((entry / MANIFEST_NAME).read_text(encoding="utf-8"))
        if raw["version"] != MANIFEST_VERSION:
            return None
        return CacheManifest(
            source=str(raw["source"]),
            resolved_revision=str(raw["resolved_revision"]),
            files={
                str(name): FileRecord(size=int(record["size"]), sha256=str(record["sha256"]))
                for name, record in raw["files"].items()
            },
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def damaged_files(entry: Path, manifest: CacheManifest, max_workers: int = 4) -> list[str]:
    """The files of `entry` that are missing or differ from the manifest in size or SHA-256."""

    def is_damaged(name: str) -> bool:
        path = entry / name
        record = manifest.files[name]
        try:
            if path.stat().st_size != record.size:
                logger.warning("%s: %d bytes, the manifest says %d", path, path.stat().st_size, record.size)
                return True
            actual = sha256_of(path)
        except OSError as error:
            logger.warning("%s: cannot be read (%s)", path, error.strerror)
            return True
        if actual != record.sha256:
            logger.warning("%s: SHA-256 %s, the manifest says %s", path, actual, record.sha256)
            return True
        return False

    names = sorted(manifest.files)
    if not names:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(names)))) as pool:
        verdicts = list(pool.map(is_damaged, names))
    return [name for name, damaged in zip(names, verdicts, strict=True) if damaged]
