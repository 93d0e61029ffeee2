"""The shared cache's budget: least recently used entries are evicted first, an entry whose lock is
held (a fetch fills or verifies it, a server started through hold_entry runs from it) is never
evicted, and what cannot fit is refused with the sizes and the entries in the way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from berth_runtime.fetch import FetchError, fetch_through_cache, parse_source
from berth_runtime.fetch.cache_eviction import RESERVATION_NAME, entry_bytes, make_room
from berth_runtime.fetch.cache_layout import LAST_USED_NAME, CacheLayout, locked, try_locked


def add_entry(layout: CacheLayout, key: str, size: int, last_used: float) -> None:
    entry = layout.entry(key)
    entry.mkdir(parents=True)
    (entry / "model.safetensors").write_bytes(b"w" * size)
    (entry / LAST_USED_NAME).touch()
    os.utime(entry / LAST_USED_NAME, (last_used, last_used))


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    cache = CacheLayout(tmp_path / "cache")
    cache.prepare()
    return cache


def test_least_recently_used_entries_go_first_and_only_as_many_as_needed(layout: CacheLayout) -> None:
    add_entry(layout, "newest", 400, last_used=3_000)
    add_entry(layout, "oldest", 400, last_used=1_000)
    add_entry(layout, "middle", 400, last_used=2_000)
    evicted = make_room(layout, "incoming", needed_bytes=500, budget_bytes=1_500)
    assert evicted == ["oldest"]
    assert sorted(layout.entry_keys()) == ["incoming", "middle", "newest"]
    assert sum(entry_bytes(layout.entry(key)) for key in layout.entry_keys()) <= 1_500
    assert list(layout.trash.iterdir()) == []


def test_an_entry_whose_lock_is_held_is_never_evicted(layout: CacheLayout) -> None:
    add_entry(layout, "oldest-in-use", 400, last_used=1_000)
    add_entry(layout, "middle", 400, last_used=2_000)
    add_entry(layout, "newest", 400, last_used=3_000)
    with locked(layout.lock_file("oldest-in-use"), shared=True):  # a pod is verifying it for reuse
        evicted = make_room(layout, "incoming", needed_bytes=500, budget_bytes=1_500)
    assert evicted == ["middle"]
    assert sorted(layout.entry_keys()) == ["incoming", "newest", "oldest-in-use"]


def test_a_server_started_through_hold_entry_keeps_its_entry_until_it_exits(
    layout: CacheLayout, tmp_path: Path
) -> None:
    add_entry(layout, "served", 400, last_used=1_000)
    add_entry(layout, "idle", 400, last_used=2_000)
    layout.users_lock_file("served").touch()
    link = tmp_path / "pod" / "model"
    link.parent.mkdir()
    link.symlink_to(layout.entry("served"))
    serving = [sys.executable, "-c", "import sys; sys.stdin.read()"]  # serves until its stdin closes
    server = subprocess.Popen(
        [sys.executable, "-m", "berth_runtime.fetch.hold_entry", str(link), "--", *serving],
        stdin=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with try_locked(layout.users_lock_file("served")) as free:
                if not free:
                    break
            assert time.monotonic() < deadline, "the server never took its entry's users lock"
            time.sleep(0.05)
        assert make_room(layout, "incoming", needed_bytes=500, budget_bytes=1_000) == ["idle"]
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    assert make_room(layout, "next", needed_bytes=500, budget_bytes=1_000) == ["served"]


def test_no_room_while_entries_are_in_use_is_refused_and_evicts_nothing_in_use(layout: CacheLayout) -> None:
    add_entry(layout, "filling", 900, last_used=1_000)
    add_entry(layout, "idle", 100, last_used=2_000)
    with (
        locked(layout.lock_file("filling")),
        pytest.raises(
            FetchError, match=r"cannot hold 500 more: 900 bytes are held by entries in use \(filling\)"
        ),
    ):
        make_room(layout, "incoming", needed_bytes=500, budget_bytes=1_000)
    assert "filling" in layout.entry_keys()
    assert not layout.entry("incoming").exists()


def test_a_model_larger_than_the_whole_budget_is_refused(layout: CacheLayout) -> None:
    add_entry(layout, "idle", 100, last_used=1_000)
    with pytest.raises(FetchError, match=r"needs 2000 bytes, more than the whole model cache budget of 1000"):
        make_room(layout, "incoming", needed_bytes=2_000, budget_bytes=1_000)
    assert layout.entry_keys() == ["idle"]


def test_a_fill_under_way_counts_with_what_it_reserved(layout: CacheLayout) -> None:
    make_room(layout, "first", needed_bytes=600, budget_bytes=1_000)
    assert entry_bytes(layout.entry("first")) == 600  # nothing downloaded yet: the reservation counts
    with locked(layout.lock_file("first")), pytest.raises(FetchError, match=r"entries in use \(first\)"):
        make_room(layout, "second", needed_bytes=600, budget_bytes=1_000)
    assert (layout.entry("first") / RESERVATION_NAME).read_text() == "600"


def test_fetches_through_the_cache_keep_to_the_budget(tmp_path: Path, tiny_llama_dir: Path) -> None:
    models = []
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_llama_dir, tmp_path / name)
        models.append(parse_source(f"file://{tmp_path / name}", None))
    model_bytes = sum(path.stat().st_size for path in tiny_llama_dir.iterdir())
    budget = model_bytes + model_bytes // 2  # one model fits, two do not
    root = tmp_path / "cache"
    first = fetch_through_cache(models[0], tmp_path / "pod-1" / "model", root, budget_bytes=budget)
    second = fetch_through_cache(models[1], tmp_path / "pod-2" / "model", root, budget_bytes=budget)
    assert first.cache_entry is not None and second.cache_entry is not None
    assert not first.cache_entry.exists(), "the least recently used entry made room"
    assert CacheLayout(root).entry_keys() == [second.cache_entry.name]
    assert entry_bytes(second.cache_entry) <= budget
    again = fetch_through_cache(models[0], tmp_path / "pod-3" / "model", root, budget_bytes=budget)
    assert not again.skipped and not second.cache_entry.exists()
