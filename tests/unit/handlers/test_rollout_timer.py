"""The rollout daemon's loop on a fake clock (looptime): it waits the interval each look returns, a
spec edit or a rollout-action annotation ends the wait within a second -- one that arrived during a
look too -- and a failed look does not end the loop.

Why: the reconcile starts a rollout, but only the daemon moves it on; idle, it looks once a minute,
so without the wake-up a canary's first step (or a promote asked for while idle) waited up to a
minute, which the integration tests measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from berth_operator.api.rollout import ROLLOUT_ACTION_ANNOTATION
from berth_operator.handlers.rollout_timer import IDLE_TICK_SECONDS, run_ticks
from berth_operator.kube import KubeApiError
from tests.daemon_stop import Stop


def body(generation: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"generation": generation, "annotations": dict(annotations or {})}}


async def run_for(
    seconds: float, live: dict[str, Any], during_look: Callable[[int], None] | None = None
) -> list[float]:
    """Runs the loop for `seconds` with looks that ask for the idle interval; returns when each
    look began. `during_look(n)` is called inside look number n (from 0)."""
    loop = asyncio.get_running_loop()
    started, times, stop = loop.time(), [], Stop()

    async def look() -> float:
        if during_look is not None:
            during_look(len(times))
        times.append(loop.time() - started)
        return IDLE_TICK_SECONDS

    task = asyncio.create_task(run_ticks(look, live, stop))
    await asyncio.sleep(seconds)
    stop.event.set()
    assert await task == len(times)
    return times


@pytest.mark.looptime
async def test_without_changes_the_loop_waits_the_interval_the_look_returned() -> None:
    assert await run_for(125, body()) == [0.0, 60.0, 120.0]


@pytest.mark.looptime
async def test_a_spec_edit_ends_the_wait_within_a_second() -> None:
    live = body(generation=1)

    async def edit_later() -> None:
        await asyncio.sleep(10.5)
        live["metadata"]["generation"] = 2

    editing = asyncio.create_task(edit_later())
    assert await run_for(75, live) == [0.0, 11.0, 71.0]
    await editing


@pytest.mark.looptime
async def test_an_action_annotation_ends_the_wait_and_its_removal_is_no_wake_up_of_its_own() -> None:
    live = body()

    async def annotate_later() -> None:
        await asyncio.sleep(20.2)
        live["metadata"]["annotations"][ROLLOUT_ACTION_ANNOTATION] = "promote"

    annotating = asyncio.create_task(annotate_later())

    def remove_in_the_second_look(look: int) -> None:
        if look == 1:  # the look that carries the action out removes the annotation
            live["metadata"]["annotations"].pop(ROLLOUT_ACTION_ANNOTATION)

    assert await run_for(100, live, remove_in_the_second_look) == [0.0, 21.0, 81.0]
    await annotating


@pytest.mark.looptime
async def test_an_edit_that_arrives_during_a_look_is_not_missed() -> None:
    live = body(generation=1)

    def edit_in_the_first_look(look: int) -> None:
        if look == 0:
            live["metadata"]["generation"] = 2

    assert await run_for(5, live, edit_in_the_first_look) == [0.0, 0.0]


@pytest.mark.looptime
async def test_an_api_error_fails_one_look_not_the_loop() -> None:
    loop = asyncio.get_running_loop()
    started, times, stop = loop.time(), [], Stop()

    async def flaky() -> float:
        times.append(loop.time() - started)
        if len(times) == 1:
            raise KubeApiError(500, "InternalError", "etcd timeout")
        return IDLE_TICK_SECONDS

    task = asyncio.create_task(run_ticks(flaky, body(), stop))
    await asyncio.sleep(70)
    stop.event.set()
    assert await task == 3
    assert times == [0.0, 5.0, 65.0]  # after the failure, the active interval the loop started with
