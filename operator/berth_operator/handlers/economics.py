"""The economics timer's Kopf glue: once a minute, for every InferenceDeployment whose spec the reconcile
has accepted, read GPU-hours, output tokens and SLO attainment from Prometheus and apply
`status.economics` under its own field manager (berth-economics), whether or not autoscaling is on.

A timer, not a daemon: the interval is the same for every resource, and the work is one look. The
first look of each resource is spread over the first minute by a hash of its name, so an operator
restart does not send every resource's day-long queries to Prometheus at once. A resource with no
Prometheus to read gets only a message (written once, not every minute).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import kopf

from berth_operator.api import resource as identity
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.builders import BuildContext
from berth_operator.economics.collect import read_economics
from berth_operator.economics.figures import EconomicsUnavailable
from berth_operator.economics.report import economics_status, inputs_from_spec, no_prometheus_status
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import observe
from berth_operator.handlers.prometheus_access import PrometheusAccessUnavailable, prometheus_access
from berth_operator.kube import KubeApiError, apply_status
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT
from berth_operator.kube.status import ECONOMICS_FIELD_MANAGER

logger = logging.getLogger(__name__)

ECONOMICS_INTERVAL_SECONDS = 60.0
"""Seconds between two looks at one resource's economics."""
FIRST_LOOK_SECONDS = (5.0, 60.0)
"""The first look comes this many seconds after the resource is seen (spread by name): after 5 s at
the earliest, so the reconcile has accepted a new spec; within the first interval at the latest."""


def first_look_delay(namespace: str | None, name: str | None, **_: Any) -> float:
    """Seconds before a resource's first look, the same for the same resource on every start."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    earliest, latest = FIRST_LOOK_SECONDS
    return earliest + (latest - earliest) * int.from_bytes(digest[:4], "big") / 2**32


async def evaluate_economics(context: OperatorContext, namespace: str, name: str) -> dict[str, Any] | None:
    """One look: the `status.economics` applied (wire form), or None when nothing was written (the
    resource is gone, its spec not accepted as it is, or the message it already carries is current)."""
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
    if owner is None:
        return None
    view = observe(owner, context.settings)
    if not isinstance(view.build, BuildContext) or not view.accepted_as_it_is:
        return None
    spec = view.build.spec
    access = await prometheus_access(context, namespace, spec)
    if isinstance(access, PrometheusAccessUnavailable) and access.no_prometheus:
        economics = no_prometheus_status()
        current = (owner.get("status") or {}).get("economics")
        if current == economics:
            return None
    else:
        selector = SeriesSelector(namespace=namespace, instance=name)
        now = context.clock()
        readings = (
            EconomicsUnavailable(access.message)
            if isinstance(access, PrometheusAccessUnavailable)
            else await read_economics(access, selector, at=now.timestamp())
        )
        inputs = inputs_from_spec(
            spec, dict(context.settings.gpu_hourly_prices), context.settings.gpu_price_currency
        )
        economics = economics_status(readings, inputs, now, who=f"{namespace}/{name} {selector.matchers()}")
    await apply_status(
        context.api, namespace, name, {"economics": economics}, field_manager=ECONOMICS_FIELD_MANAGER
    )
    context.metrics.writes.labels(kind="InferenceDeployment", verb="status").inc()
    return economics


@kopf.timer(
    identity.GROUP,
    identity.VERSION,
    identity.PLURAL,
    id="economics",
    interval=ECONOMICS_INTERVAL_SECONDS,
    initial_delay=first_look_delay,
)
async def economics_timer(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
    context = memo.berth
    if not isinstance(context, OperatorContext) or namespace is None or name is None:
        raise kopf.PermanentError(
            "the economics timer needs the operator's context (python -m berth_operator)"
        )
    try:
        await evaluate_economics(context, namespace, name)
    except KubeApiError as error:
        # The next look retries; a timer that raised would be retried by Kopf sooner, for nothing.
        context.metrics.reconcile_errors.labels(reason=f"api_{error.status}").inc()
        logger.warning("%s/%s: economics not written, retrying next interval: %s", namespace, name, error)
