"""The fetch procedure shared by every source: skip if done, download what is missing, verify, mark.

Order matters: the completion marker is removed before anything changes and written only after the
directory verified as a loadable model, so a marker always means "complete for this source and
revision" even if the process is killed at any point in between.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.selection import RemoteFile, Snapshot, is_needed
from berth_runtime.fetch.source import HubSource, LocalSource, S3Source, Source
from berth_runtime.fetch.state import (
    CompletionMarker,
    FileLedger,
    marker_is_satisfied,
    remove_marker,
    write_marker,
)
from berth_runtime.fetch.verify import verify_model_dir

logger = logging.getLogger("berth_runtime.fetch")


class Backend(Protocol):
    """A storage kind: list a snapshot, then download single files with resume."""

    def snapshot(self) -> Snapshot: ...

    def download(self, remote: RemoteFile, partial: Path) -> None: ...


@dataclass(frozen=True)
class FetchOutcome:
    """What a fetch did: `skipped` when a completed fetch of the same source and revision was found;
    `cache_entry` is the shared cache entry the destination links to (fetches with a cache root)."""

    skipped: bool
    resolved_revision: str
    downloaded: tuple[str, ...]
    reused: tuple[str, ...]
    cache_entry: Path | None = None


def backend_for(source: Source) -> Backend:
    if isinstance(source, HubSource):
        from berth_runtime.fetch.hub import HubBackend

        return HubBackend(source)
    if isinstance(source, S3Source):
        from berth_runtime.fetch.s3 import S3Backend

        return S3Backend(source)
    if isinstance(source, LocalSource):
        from berth_runtime.fetch.local import LocalBackend

        return LocalBackend(source)
    raise TypeError(f"no backend for {source!r}")


def fetch(
    source: Source,
    destination: Path,
    *,
    max_workers: int = 8,
    make_backend: Callable[[Source], Backend] = backend_for,
) -> FetchOutcome:
    """Make `destination` a verified copy of the model at `source`; see the module docstring."""
    label = str(source)
    if marker_is_satisfied(destination, label, source.revision):
        logger.info("%s is already complete in %s; nothing to do", label, destination)
        return FetchOutcome(skipped=True, resolved_revision="", downloaded=(), reused=())
    backend = make_backend(source)
    return fill(source, backend, backend.snapshot(), destination, max_workers=max_workers)


def needed_files(source: Source, snapshot: Snapshot) -> list[RemoteFile]:
    """The files of `snapshot` the runtime reads; FetchError when there are none."""
    needed = [remote for remote in snapshot.files if is_needed(remote.path)]
    if not needed:
        listed = ", ".join(remote.path for remote in snapshot.files[:10]) or "nothing"
        raise FetchError(
            f"{source} holds no model files (safetensors, JSON configs, tokenizer); it lists {listed}"
        )
    return needed


def fill(
    source: Source, backend: Backend, snapshot: Snapshot, destination: Path, *, max_workers: int = 8
) -> FetchOutcome:
    """Download what `destination` lacks of `snapshot`, verify the model, then write the marker."""
    label = str(source)
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(f"cannot create the destination {destination}: {error}") from None
    remove_marker(destination)
    needed = needed_files(source, snapshot)
    _remove_stale_files(destination, {remote.path for remote in needed})

    ledger = FileLedger(destination)
    reused = tuple(remote.path for remote in needed if ledger.is_current(destination, remote))
    to_download = [remote for remote in needed if remote.path not in reused]
    logger.info(
        "%s at %s: %d file(s) to download, %d already present",
        label,
        snapshot.resolved_revision,
        len(to_download),
        len(reused),
    )
    _download_all(backend, to_download, destination, ledger, max_workers)

    verify_model_dir(destination)
    write_marker(
        destination,
        CompletionMarker(
            source=label,
            revision=source.revision,
            resolved_revision=snapshot.resolved_revision,
            files={remote.path: remote.size for remote in needed},
        ),
    )
    logger.info("%s is complete in %s", label, destination)
    return FetchOutcome(
        skipped=False,
        resolved_revision=snapshot.resolved_revision,
        downloaded=tuple(remote.path for remote in to_download),
        reused=reused,
    )


def _download_all(
    backend: Backend, files: list[RemoteFile], destination: Path, ledger: FileLedger, max_workers: int
) -> None:
    if not files:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(files)))) as pool:
        futures = [pool.submit(_download_one, backend, remote, destination, ledger) for remote in files]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()


def _download_one(backend: Backend, remote: RemoteFile, destination: Path, ledger: FileLedger) -> None:
    partial = ledger.partial_path(remote)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists() and partial.stat().st_size > remote.size:
        partial.unlink()
    resumed_from = partial.stat().st_size if partial.exists() else 0
    if resumed_from:
        logger.info("resuming %s at byte %d of %d", remote.path, resumed_from, remote.size)
    backend.download(remote, partial)
    received = partial.stat().st_size if partial.exists() else 0
    if received != remote.size:
        raise FetchError(
            f"{remote.path}: received {received} bytes, expected {remote.size}; run the fetch again"
        )
    os.replace(partial, destination / remote.path)
    ledger.record(remote)
    logger.info("downloaded %s (%d bytes)", remote.path, remote.size)


def _remove_stale_files(destination: Path, wanted: set[str]) -> None:
    """Drop model files of an earlier revision, so an old shard can never be loaded beside new ones."""
    for path in destination.iterdir():
        if path.is_file() and is_needed(path.name) and path.name not in wanted:
            logger.info("removing %s: not part of this revision", path.name)
            path.unlink()
