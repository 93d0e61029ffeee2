"""The autoscaler's daemon: its loop evaluates once per interval on a fake clock (looptime), follows
interval changes and outlives a failed evaluation; Kopf knows it by a stable id."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from berth_operator.handlers.autoscaling import run_every_interval
from tests.daemon_stop import Stop


@pytest.mark.looptime
async def test_the_loop_evaluates_once_per_interval_and_follows_interval_changes() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    times: list[float] = []
    interval = {"seconds": 10.0}
    stop = Stop()

    async def evaluate_once() -> float:
        times.append(loop.time() - started)
        return interval["seconds"]

    task = asyncio.create_task(run_every_interval(evaluate_once, 15.0, stop))
    await asyncio.sleep(35)
    interval["seconds"] = 30.0
    await asyncio.sleep(60)
    stop.event.set()
    assert await task == len(times)
    assert times == [0.0, 10.0, 20.0, 30.0, 40.0, 70.0]


@pytest.mark.looptime
async def test_an_api_error_fails_one_evaluation_not_the_loop() -> None:
    from berth_operator.kube import KubeApiError

    calls = 0
    stop = Stop()

    async def flaky() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KubeApiError(500, "InternalError", "etcd timeout")
        return 10.0

    task = asyncio.create_task(run_every_interval(flaky, 10.0, stop))
    await asyncio.sleep(25)
    stop.event.set()
    assert await task == 3


def test_the_daemon_is_registered_with_a_stable_id() -> None:
    import berth_operator.handlers.registration  # noqa: F401

    daemons = kopf.get_default_registry()._spawning.get_all_handlers()
    assert "autoscaler" in {handler.id for handler in daemons}
