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


class Rounds:
    """Pod sampling as the loop sees it: a round every `period` seconds (None: none), each taking
    `takes` seconds of I/O at most `timeout`; the loop's times of each round."""

    def __init__(self, period: float | None, timeout: float = 1.0, takes: float = 0.0) -> None:
        self.period, self.timeout, self.takes = period, timeout, takes
        self.times: list[float] = []
        self.fail_first = False
        self.started = asyncio.get_running_loop().time()

    def period_seconds(self) -> float | None:
        return self.period

    def round_timeout_seconds(self) -> float:
        return self.timeout

    async def run_round(self) -> None:
        from berth_operator.kube import KubeApiError

        self.times.append(asyncio.get_running_loop().time() - self.started)
        if self.fail_first and len(self.times) == 1:
            raise KubeApiError(500, "InternalError", "etcd timeout")
        await asyncio.sleep(self.takes)


async def evaluations_with(rounds: Rounds, seconds: float, interval: float = 10.0) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    stop = Stop()

    async def evaluate_once() -> float:
        times.append(loop.time() - rounds.started)
        return interval

    task = asyncio.create_task(run_every_interval(evaluate_once, 15.0, stop, rounds))
    await asyncio.sleep(seconds)
    stop.event.set()
    await task
    return times


@pytest.mark.looptime
async def test_between_evaluations_a_round_runs_every_sampling_interval() -> None:
    rounds = Rounds(period=2.0, timeout=1.0)
    evaluations = await evaluations_with(rounds, 25)
    assert evaluations == [0.0, 10.0, 20.0]  # the schedule is the evaluations' own
    # Every 2 s, each round's reads over before the evaluation is due (8 s + 1 s < 10 s); 10 s is the
    # evaluation's.
    assert rounds.times == [2.0, 4.0, 6.0, 8.0, 12.0, 14.0, 16.0, 18.0, 22.0, 24.0]


@pytest.mark.looptime
async def test_a_round_never_holds_up_the_evaluation() -> None:
    """Rounds that take their whole timeout: none starts unless it is over before the evaluation."""
    rounds = Rounds(period=3.0, timeout=1.0, takes=1.0)
    evaluations = await evaluations_with(rounds, 21)
    assert evaluations == [0.0, 10.0, 20.0]
    assert rounds.times == [3.0, 7.0, 13.0, 17.0]


@pytest.mark.looptime
async def test_no_rounds_while_sampling_is_off() -> None:
    rounds = Rounds(period=None)
    assert await evaluations_with(rounds, 25) == [0.0, 10.0, 20.0]
    assert rounds.times == []


@pytest.mark.looptime
async def test_an_api_error_fails_one_round_not_the_loop() -> None:
    rounds = Rounds(period=2.0)
    rounds.fail_first = True
    assert await evaluations_with(rounds, 15) == [0.0, 10.0]
    assert rounds.times == [2.0, 4.0, 6.0, 8.0, 12.0, 14.0]
