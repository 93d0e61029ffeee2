"""Where a shared model cache keeps its entries and locks, and how an entry is named.

The cache root is shared by every pod on a node (a hostPath) or by every pod that mounts one
ReadWriteMany claim, so the names and locks here are the protocol between independent processes:

- `entries/<key>/`: one model, at one resolved revision, from one endpoint. The key is a digest
  of the normalized source (with its endpoint: the same bucket name on two S3 services is two
  models) and the resolved revision (a Hub commit, a fingerprint of an S3 listing's ETags), so a
  changed object or a moved branch is a new entry and an entry's content never changes meaning.
- `locks/<key>.lock`: flock(2) on it guards the entry: exclusive while one process fills or
  repairs it, shared while a process verifies it for reuse. Lock files are never removed (a removed
  lock file would let two processes lock two different inodes); they are empty.
- `locks/<key>.users`: each server that runs from the entry holds flock(2) shared on it for its
  whole life (`hold_entry`), so an entry in use is never evicted, while a fetch may still repair it
  (a replaced file is a new inode: a running server keeps reading the one it opened).
- `locks/budget.lock`: held while an entry's space is reserved and others are evicted for it.
- `trash/`: an evicted entry is renamed here first (atomic), then deleted, so no process ever sees
  half an entry under `entries/`.

flock works across processes, containers and pods of one node on any local filesystem, and on
NFSv4 and CephFS (the kernel maps it onto their byte-range locks), which is what a ReadWriteMany
claim usually is.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.source import HubSource, LocalSource, S3Source, Source

logger = logging.getLogger("berth_runtime.fetch")

DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
DEFAULT_S3_ENDPOINT = "aws"
LAST_USED_NAME = ".berth-cache-last-used"
_SLUG_UNSAFE = re.compile(r"[^a-z0-9.-]+")


def normalized_source(source: Source) -> str:
    """The source as the cache knows it: scheme, location and the endpoint it is read from."""
    if isinstance(source, HubSource):
        endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/")
        return f"hf://{source.repo_id} from {endpoint}"
    if isinstance(source, S3Source):
        endpoint = (os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_S3_ENDPOINT).rstrip("/")
        return f"s3://{source.bucket}/{source.prefix} from {endpoint}"
    if isinstance(source, LocalSource):
        return f"file://{source.path}"
    raise TypeError(f"no normalized form for {source!r}")


def entry_key(source: Source, resolved_revision: str) -> str:
    """`<readable slug>-<digest>`: the slug is the source's last path segment, for people reading `ls`."""
    normalized = normalized_source(source)
    digest = hashlib.sha256(f"{normalized}\n{resolved_revision}".encode()).hexdigest()[:32]
    last_segment = normalized.split(" from ", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    slug = _SLUG_UNSAFE.sub("-", last_segment.lower()).strip("-.")[:40] or "model"
    return f"{slug}-{digest}"


@dataclass(frozen=True)
class CacheLayout:
    """The paths under one cache root."""

    root: Path

    @property
    def entries(self) -> Path:
        return self.root / "entries"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def trash(self) -> Path:
        return self.root / "trash"

    def entry(self, key: str) -> Path:
        return self.entries / key

    def lock_file(self, key: str) -> Path:
        return self.locks / f"{key}.lock"

    def users_lock_file(self, key: str) -> Path:
        """Shared-locked by each server that runs from the entry (`hold_entry`), for its whole life."""
        return self.locks / f"{key}.users"

    @property
    def budget_lock_file(self) -> Path:
        return self.locks / "budget.lock"

    def prepare(self) -> None:
        """Create the folders; a root the fetch container cannot write is explained."""
        for folder in (self.entries, self.locks, self.trash):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise FetchError(
                    f"model cache root {self.root}: cannot create {folder.name}/ ({error.strerror}); the "
                    f"root must be writable by uid {os.getuid()} (for a hostPath root the operator's "
                    "prepare-model-cache init container sets its owner)"
                ) from None

    def entry_keys(self) -> list[str]:
        """Every entry's key, in no particular order."""
        return [path.name for path in self.entries.iterdir() if path.is_dir()]


def touch_last_used(entry: Path) -> None:
    """Record a use of `entry` for the LRU order (the file's modification time)."""
    marker = entry / LAST_USED_NAME
    marker.touch(exist_ok=True)
    os.utime(marker)


def last_used(entry: Path) -> float:
    """When `entry` was last used (filled or reused); its folder's time when never recorded."""
    for path in (entry / LAST_USED_NAME, entry):
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            continue
    return 0.0


@contextmanager
def locked(path: Path, *, shared: bool = False, waiting_note: str = "") -> Iterator[None]:
    """Hold flock on `path` (created if missing) for the block, waiting for it; logs when it must wait."""
    kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for %s%s", path.name, f" ({waiting_note})" if waiting_note else "")
            fcntl.flock(descriptor, kind)
        yield
    finally:
        os.close(descriptor)


@contextmanager
def try_locked(path: Path) -> Iterator[bool]:
    """Try to hold flock exclusively on `path` without waiting; yields whether it is held."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise FetchError(f"cannot open the lock file {path}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        yield True
    finally:
        os.close(descriptor)
