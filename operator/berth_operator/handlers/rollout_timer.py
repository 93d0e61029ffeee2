"""The rollout timer: one daemon per InferenceDeployment that moves its rollout on with time.

Steps are held for their pause, analysis runs every `analysis.intervalSeconds`, a progress deadline
passes: none of these is an event Kopf would deliver. So every few seconds while a rollout is under
way (once a minute otherwise) the daemon converges the resource's children (the Deployments, the
route's weights) through the one path all writers share (`reconcile.converge`, with analysis), then
brings the status in line. It acts only on a spec the reconcile has accepted as it is now.
"""

from __future__ import annotations

from typing import Any

import kopf

from berth_operator.api import resource as identity
from berth_operator.builders import BuildContext
from berth_operator.handlers.autoscaling import run_every_interval
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


async def tick(context: OperatorContext, namespace: str, name: str) -> float:
    """One look at the rollout of one resource; returns the seconds until the next."""
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
    if owner is None:
        return IDLE_TICK_SECONDS
    view = observe(owner, context.settings)
    if not isinstance(view.build, BuildContext) or not view.accepted_as_it_is:
        return ACTIVE_TICK_SECONDS
    try:
        await converge(context, view, view.build, analyse=True)
    except (kopf.TemporaryError, kopf.PermanentError):
        return ACTIVE_TICK_SECONDS  # a child held by another object, or refused: the reconcile reports it
    await sync_status(context, namespace, name)
    rollout = (
        (await context.api.get(INFERENCE_DEPLOYMENT, namespace, name) or {}).get("status", {}).get("rollout")
    )
    settled = (
        rollout is not None
        and rollout.get("phase") in ("Stable", "RolledBack")
        and not rollout.get("canaryReplicas")
    )
    return IDLE_TICK_SECONDS if settled else ACTIVE_TICK_SECONDS


@kopf.daemon(identity.GROUP, identity.VERSION, identity.PLURAL, id="rollout", cancellation_timeout=10.0)
async def rollout_timer(
    namespace: str | None, name: str | None, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
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

    await run_every_interval(look, ACTIVE_TICK_SECONDS, stopped)
