"""Fetching through a shared model cache: weights once per node (or per claim), not once per pod.

`python -m berth_runtime fetch SOURCE DEST --cache-root ROOT` lists the source (metadata only),
names the entry for what it resolved to (`cache_layout.entry_key`) and then:

1. under the entry's shared lock, reuses it when its manifest is there and every file still has
   the recorded size and SHA-256 (`cache_manifest`): nothing is downloaded;
2. otherwise, under the exclusive lock (a second pod waits here, then reuses what the first
   filled), removes the damaged files, reserves room within the budget (`cache_eviction`),
   downloads what is missing with the same resume and verification as a pod-local fetch
   (`fetcher.fill`), hashes the files (refusing a Hub file whose hash is not the SHA-256 the Hub
   publishes for it) and writes the manifest last.

DEST becomes a symbolic link to the entry. The runtime container mounts the cache root read-only
at the same path as this (init) container, so the link resolves there too and the server loads
the weights straight from the cache.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from berth_runtime.fetch.cache_eviction import make_room
from berth_runtime.fetch.cache_layout import CacheLayout, entry_key, locked, touch_last_used
from berth_runtime.fetch.cache_manifest import (
    CacheManifest,
    FileRecord,
    damaged_files,
    read_manifest,
    record_files,
    remove_manifest,
    write_manifest,
)
from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.fetcher import Backend, FetchOutcome, backend_for, fill, needed_files
from berth_runtime.fetch.selection import RemoteFile
from berth_runtime.fetch.source import Source
from berth_runtime.fetch.state import FileLedger, remove_marker

logger = logging.getLogger("berth_runtime.fetch")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def fetch_through_cache(
    source: Source,
    destination: Path,
    cache_root: Path,
    *,
    budget_bytes: int | None = None,
    max_workers: int = 8,
    make_backend: Callable[[Source], Backend] = backend_for,
) -> FetchOutcome:
    """Make `destination` a link to a verified cache entry of `source`; see the module docstring."""
    layout = CacheLayout(cache_root)
    layout.prepare()
    backend = make_backend(source)
    snapshot = backend.snapshot()
    needed = needed_files(source, snapshot)
    key = entry_key(source, snapshot.resolved_revision)
    entry = layout.entry(key)
    lock_file = layout.lock_file(key)

    with locked(lock_file, shared=True, waiting_note=f"another pod is filling {key}"):
        if _files_to_refetch(entry, needed, snapshot.resolved_revision) is None:
            return _reuse(source, entry, destination, snapshot.resolved_revision)
    with locked(lock_file, waiting_note=f"another pod is using or filling {key}"):
        damaged = _files_to_refetch(entry, needed, snapshot.resolved_revision)
        if damaged is None:
            return _reuse(source, entry, destination, snapshot.resolved_revision)
        _discard(entry, damaged)
        if budget_bytes is not None:
            make_room(layout, key, sum(remote.size for remote in needed), budget_bytes)
        outcome = fill(source, backend, snapshot, entry, max_workers=max_workers)
        records = record_files(entry, [remote.path for remote in needed])
        _check_published_digests(entry, needed, records)
        write_manifest(entry, CacheManifest(str(source), snapshot.resolved_revision, records))
        touch_last_used(entry)
        _make_users_lock(entry)
    _point(destination, entry)
    logger.info("%s: filled the cache entry %s", source, entry)
    return FetchOutcome(
        skipped=False,
        resolved_revision=outcome.resolved_revision,
        downloaded=outcome.downloaded,
        reused=outcome.reused,
        cache_entry=entry,
    )


def _files_to_refetch(entry: Path, needed: list[RemoteFile], resolved_revision: str) -> list[str] | None:
    """None when the entry is complete and intact; else the files to fetch again ([] when the
    entry was never completed: the fill then resumes whatever is there)."""
    manifest = read_manifest(entry)
    if manifest is None or manifest.resolved_revision != resolved_revision:
        return []
    if set(manifest.files) != {remote.path for remote in needed}:
        logger.info("%s was filled with other files than this snapshot needs; refilling", entry)
        return []
    damaged = damaged_files(entry, manifest)
    if damaged:
        logger.warning("%s: damaged file(s) %s will be fetched again", entry, ", ".join(damaged))
        return damaged
    return None


def _check_published_digests(entry: Path, needed: list[RemoteFile], records: dict[str, FileRecord]) -> None:
    """A Hub LFS file's identity is the SHA-256 of its content: bytes that hash otherwise are removed
    and refused here, before the manifest would make them trusted by every later pod."""
    wrong = [
        remote.path
        for remote in needed
        if _SHA256.fullmatch(remote.identity) and records[remote.path].sha256 != remote.identity
    ]
    if wrong:
        _discard(entry, wrong)
        raise FetchError(
            f"{', '.join(wrong)}: the downloaded bytes do not hash to the SHA-256 the source publishes; "
            "they were removed, and the next run of the fetch downloads them again"
        )


def _discard(entry: Path, damaged: list[str]) -> None:
    """Make the entry incomplete and drop its damaged files, so the fill fetches exactly those."""
    if not entry.exists():
        return
    remove_manifest(entry)
    remove_marker(entry)
    ledger = FileLedger(entry)
    for name in damaged:
        (entry / name).unlink(missing_ok=True)
        ledger.forget(name)


def _reuse(source: Source, entry: Path, destination: Path, resolved_revision: str) -> FetchOutcome:
    touch_last_used(entry)
    _make_users_lock(entry)
    _point(destination, entry)
    logger.info("%s: reusing the verified cache entry %s; nothing downloaded", source, entry)
    return FetchOutcome(
        skipped=True, resolved_revision=resolved_revision, downloaded=(), reused=(), cache_entry=entry
    )


def _make_users_lock(entry: Path) -> None:
    """Create the users lock here: the runtime container, which takes it, mounts the cache read-only."""
    CacheLayout(entry.parent.parent).users_lock_file(entry.name).touch(exist_ok=True)


def _point(destination: Path, entry: Path) -> None:
    """Replace `destination` with a link to `entry` (atomically, so a restart never sees neither)."""
    if destination.exists() and not destination.is_symlink():
        raise FetchError(
            f"{destination} exists and is not a link into the model cache; with --cache-root the "
            "destination must be absent or a link this command made"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.link-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(entry, target_is_directory=True)
    os.replace(temporary, destination)
