"""The rollout timer: one daemon per InferenceDeployment that moves its rollout on with time.

Steps are held for their pause, analysis runs every `analysis.intervalSeconds`, a progress deadline
passes: none of these is an event Kopf would deliver. So every few seconds while a rollout is under
way (once a minute otherwise) the daemon converges the resource's children (the Deployments, the
route's weights) through the one path all writers share (`reconcile.converge`, with analysis), then
brings the status in line. It acts only on a spec the reconcile has accepted as it is now.

A spec edit (which may start a rollout) or a `berth.dev/rollout-action` annotation ends the wait at
once: the reconcile starts a rollout but nothing else moves it on, so without this a canary's first
step, or a promote asked for while idle, would wait out the idle minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from berth_operator.api import resource as identity
from berth_operator.api.rollout import ROLLOUT_ACTION_ANNOTATION
from berth_operator.builders import BuildContext
from berth_operator.handlers.autoscaling import StopSignal
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import observe
from berth_operator.handlers.reconcile import converge
from berth_operator.handlers.status_sync import sync_status
from berth_operator.kube import KubeApiError
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT

ACTIVE_TICK_SECONDS = 5.0
"""Seconds between looks while a rollout is under way (or a canary Deployment still runs)."""
IDLE_TICK_SECONDS = 60.0
"""Seconds between looks while every replica runs the stable revision."""
WAKE_CHECK_SECONDS = 1.0
"""Seconds between glances, while waiting, at Kopf's live copy of the resource (no API request) for a
spec edit or an action annotation, either of which ends the wait."""

logger = logging.getLogger(__name__)


def wake_marks(body: Mapping[str, Any]) -> tuple[object, object]:
    """What a wait watches: the generation (a spec edit) and the action annotation."""
    metadata = body.get("metadata") or {}
    return metadata.get("generation"), (metadata.get("annotations") or {}).get(ROLLOUT_ACTION_ANNOTATION)


def woken(body: Mapping[str, Any], marks: tuple[object, object]) -> bool:
    """The spec was edited, or an action asked for, since `marks` were taken. An annotation that went
    away wakes nothing: the look that carried the action out removed it."""
    generation, action = wake_marks(body)
    return generation != marks[0] or (action is not None and action != marks[1])


async def wait_for_next_tick(
    stopped: StopSignal, seconds: float, body: Mapping[str, Any], marks: tuple[object, object]
) -> None:
    """Wait `seconds`, or only until `body` (kept current by Kopf) shows a change since `marks`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not stopped and not woken(body, marks):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await stopped.wait(min(WAKE_CHECK_SECONDS, remaining))


async def run_ticks(
    look: Callable[[], Awaitable[float]], body: Mapping[str, Any], stopped: StopSignal
) -> int:
    """Look, then wait the seconds the look returned -- cut short by a spec edit or an action
    annotation that arrived since the look began -- until stopped. An API error fails one look, never
    the loop, which keeps the last interval. Returns the looks taken."""
    interval, looks = ACTIVE_TICK_SECONDS, 0
    while not stopped:
        marks = wake_marks(body)
        try:
            interval = await look()
        except KubeApiError as error:
            logger.warning("rollout look failed, retrying next interval: %s", error)
        looks += 1
        await wait_for_next_tick(stopped, interval, body, marks)
    return looks


async def tick(context: OperatorContext, namespace: str, name: str) -> float:
    """One look at the rollout of one resource; returns the seconds until the next."""
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
    if owner is None:
        return IDLE_TICK_SECONDS
    view = observe(owner, context.settings)
    if not isinstance(view.build, BuildContext) or not view.accepted_as_it_is:
        return ACTIVE_TICK_SECONDS
    try:
        rollout = (await converge(context, view, view.build, analyse=True)).rollout
    except (kopf.TemporaryError, kopf.PermanentError):
        return ACTIVE_TICK_SECONDS  # a child held by another object, or refused: the reconcile reports it
    await sync_status(context, namespace, name)
    settled = rollout.phase in ("Stable", "RolledBack") and not rollout.canary_replicas
    return IDLE_TICK_SECONDS if settled else ACTIVE_TICK_SECONDS


@kopf.daemon(identity.GROUP, identity.VERSION, identity.PLURAL, id="rollout", cancellation_timeout=10.0)
async def rollout_timer(
    namespace: str | None,
    name: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    context = memo.berth
    if not isinstance(context, OperatorContext) or namespace is None or name is None:
        raise kopf.PermanentError("the rollout timer needs the operator's context (python -m berth_operator)")

    async def look() -> float:
        try:
            return await tick(context, namespace, name)
        except KubeApiError as error:
            context.metrics.reconcile_errors.labels(reason=f"api_{error.status}").inc()
            raise

    await run_ticks(look, body, stopped)
