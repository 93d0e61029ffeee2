"""A tensor-parallel server may sit idle for longer than any collective timeout: between steps each
worker waits in the step channel's broadcast for rank 0's next plan, and that wait must not time out
(rank 0's death ends a worker through its parent watch, a worker's ends rank 0 through the launcher's
watcher, so no timeout is needed there). Here the collective timeout is shortened to 2 s and rank 0
sends its next message after 4 s."""

from __future__ import annotations

import datetime
import multiprocessing
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import pytest

from berth_runtime.parallel import group as group_module
from berth_runtime.parallel.group import create_store, join_as_host, join_group, leave_group
from berth_runtime.parallel.step_channel import StepChannel

SHORT_TIMEOUT = datetime.timedelta(seconds=2)


def _worker(port: int, results: Queue[str], imported: Event) -> None:
    group_module.COLLECTIVE_TIMEOUT = SHORT_TIMEOUT
    imported.set()  # both ranks then join within moments, well inside the short timeout
    try:
        channel = StepChannel(join_group(1, 2, port, "cpu"))
        results.put("stop" if channel.receive() is None else "a step")
    except Exception as error:  # the outcome is the test's to judge
        results.put(f"failed: {error}")
    leave_group()


def test_a_worker_waits_out_an_idle_spell_longer_than_the_collective_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = multiprocessing.get_context("spawn")
    results: Queue[str] = context.Queue()
    imported = context.Event()
    store = create_store(2)
    worker = context.Process(target=_worker, args=(store.port, results, imported), daemon=True)
    worker.start()
    try:
        assert imported.wait(60), "the worker did not start"
        monkeypatch.setattr(group_module, "COLLECTIVE_TIMEOUT", SHORT_TIMEOUT)
        group = join_as_host(store, 2, "cpu")
        time.sleep(2 * SHORT_TIMEOUT.total_seconds())  # idle: no request, no step
        StepChannel(group).send_stop()
        assert results.get(timeout=30) == "stop"
    finally:
        leave_group()
        worker.join(10)
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == 0
