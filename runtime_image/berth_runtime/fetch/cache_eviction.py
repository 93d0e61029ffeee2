"""The shared cache's byte budget: room for a new entry is made by evicting least recently used ones.

A node's disk is shared with images, logs and other pods' emptyDirs, so the cache keeps to the
budget the operator was given (BERTH_MODEL_CACHE_BUDGET). Before a fill, the filler reserves the
entry's size and evicts entries in least-recently-used order until the reservation fits. An entry in
use is never evicted: one being filled, repaired or verified (its lock is held) or one a server runs
from (its users lock is held, see `hold_entry`). The eviction takes both locks without waiting and
skips the entry when it cannot.

A reservation is what makes two fills at once keep to the budget: an entry being filled counts as
the larger of the bytes it has on disk and the bytes it reserved.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from berth_runtime.fetch.cache_layout import CacheLayout, last_used, locked, try_locked
from berth_runtime.fetch.errors import FetchError

logger = logging.getLogger("berth_runtime.fetch")

RESERVATION_NAME = ".berth-cache-reserved"


def entry_bytes(entry: Path) -> int:
    """Bytes the entry holds on disk, or the bytes it reserved when that is more (a fill under way)."""
    on_disk = 0
    for folder, _, names in os.walk(entry):
        for name in names:
            try:
                on_disk += (Path(folder) / name).stat().st_size
            except FileNotFoundError:
                continue
    try:
        reserved = int((entry / RESERVATION_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        reserved = 0
    return max(on_disk, reserved)


def make_room(layout: CacheLayout, key: str, needed_bytes: int, budget_bytes: int) -> list[str]:
    """Reserve `needed_bytes` for entry `key`, evicting unlocked entries, oldest use first.

    The caller holds the lock of `key`. Returns the evicted keys. Raises FetchError when the
    entry is larger than the whole budget, or when entries in use hold too much of it.
    """
    if needed_bytes > budget_bytes:
        raise FetchError(
            f"the model needs {needed_bytes} bytes, more than the whole model cache budget of "
            f"{budget_bytes} bytes (--cache-budget-bytes, the operator's BERTH_MODEL_CACHE_BUDGET); "
            "raise the budget or use spec.model.cache.mode Pod"
        )
    evicted: list[str] = []
    with locked(layout.budget_lock_file, waiting_note="another pod is reserving cache space"):
        _empty_trash(layout)
        others = [other for other in layout.entry_keys() if other != key]
        sizes = {other: entry_bytes(layout.entry(other)) for other in others}
        used = sum(sizes.values())
        in_use: list[str] = []
        for other in sorted(others, key=lambda name: last_used(layout.entry(name))):
            if used + needed_bytes <= budget_bytes:
                break
            with (
                try_locked(layout.lock_file(other)) as filling_free,
                try_locked(layout.users_lock_file(other)) as serving_free,
            ):
                if not (filling_free and serving_free):
                    in_use.append(other)
                    continue
                _evict(layout, other)
            used -= sizes[other]
            evicted.append(other)
            logger.info("evicted %s (%d bytes) from the model cache", other, sizes[other])
        if used + needed_bytes > budget_bytes:
            raise FetchError(
                f"the model cache budget of {budget_bytes} bytes cannot hold {needed_bytes} more: "
                f"{used} bytes are held by entries in use ({', '.join(in_use)}); the fetch is retried "
                "when the init container restarts, by when those fills have finished"
            )
        entry = layout.entry(key)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / RESERVATION_NAME).write_text(str(needed_bytes), encoding="utf-8")
    return evicted


def _evict(layout: CacheLayout, key: str) -> None:
    """Move the entry out of `entries/` at once (rename is atomic), then delete it."""
    doomed = layout.trash / f"{key}.{uuid.uuid4().hex[:8]}"
    os.replace(layout.entry(key), doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _empty_trash(layout: CacheLayout) -> None:
    """Delete what an eviction interrupted by a crash left behind."""
    for leftover in layout.trash.iterdir():
        shutil.rmtree(leftover, ignore_errors=True)
