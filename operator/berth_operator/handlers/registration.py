"""Kopf registrations: which events run which function, under stable explicit ids.

Importing this module registers the handlers on Kopf's default registry (`python -m berth_operator`
does). Handler ids are part of the persisted state (progress annotations berth.dev/<id>): never
rename them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import kopf

import berth_operator.handlers.autoscaling  # (registers the autoscaler daemon)
import berth_operator.handlers.economics  # (registers the economics timer)
import berth_operator.handlers.rollout_timer  # noqa: F401  (registers the rollout daemon)
from berth_operator.api import resource as identity
from berth_operator.builders.labels import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from berth_operator.builders.pod_problems import START_FAILURE_EVENT_REASONS
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import plain
from berth_operator.handlers.reconcile import reconcile, repair, retry_delay
from berth_operator.handlers.status_sync import follow, follow_pod
from berth_operator.kube import KubeApiError

ANNOTATION_PREFIX = "berth.dev"
FINALIZER = f"{ANNOTATION_PREFIX}/finalizer"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
RESYNC_SECONDS = 300.0
WATCH_SERVER_TIMEOUT_SECONDS = 600
RESOURCE = (identity.GROUP, identity.VERSION, identity.PLURAL)
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
SERVICES = ("v1", "services")
CONFIG_MAPS = ("v1", "configmaps")
POD_DISRUPTION_BUDGETS = ("policy", "v1", "poddisruptionbudgets")
ENDPOINT_SLICES = ("discovery.k8s.io", "v1", "endpointslices")
WATCHED_CHILDREN = (
    ("apps", "v1", "deployments"),
    ("v1", "pods"),
    SERVICES,
    CONFIG_MAPS,
    POD_DISRUPTION_BUDGETS,
    ENDPOINT_SLICES,  # not applied by berth: the Service's slices carry its labels (and so its selector)
)
# Events have no labels to select by: the API server filters them by field to Warnings about pods.
EVENTS = ("v1", "events")
POD_WARNINGS_SELECTOR = "involvedObject.kind=Pod,type=Warning"

Result = TypeVar("Result")


def _context(memo: Any) -> OperatorContext:
    context = memo.berth
    if not isinstance(context, OperatorContext):
        raise TypeError(
            "the Kopf memo carries no OperatorContext (start the operator with python -m berth_operator)"
        )
    return context


async def _measured(
    context: OperatorContext, handler: str, work: Awaitable[Result], retry: int = 0
) -> Result:
    """Run one handler body, recording its duration and, on failure, why; an API server that does
    not answer is retried with a delay that grows with Kopf's `retry` count."""
    started = time.perf_counter()
    try:
        return await work
    except kopf.PermanentError:
        context.metrics.reconcile_errors.labels(reason="permanent").inc()
        raise
    except kopf.TemporaryError:
        context.metrics.reconcile_errors.labels(reason="temporary").inc()
        raise
    except KubeApiError as error:
        context.metrics.reconcile_errors.labels(reason=f"api_{error.status}").inc()
        raise kopf.TemporaryError(f"API server error: {error}", delay=retry_delay(retry)) from error
    except Exception:
        context.metrics.reconcile_errors.labels(reason="unexpected").inc()
        raise
    finally:
        context.metrics.reconcile_duration.labels(handler=handler).observe(time.perf_counter() - started)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kopf's own state lives under berth.dev, in annotations (status stays berth's alone)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # berth emits its own Events on meaningful transitions; Kopf adds only warnings and errors.
    settings.posting.level = logging.WARNING
    # Re-establish watches every 10 minutes: a watch silently broken by a proxy or load balancer
    # would otherwise stop all events with no error.
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT_SECONDS + 60
    # Watch only berth's own children (and their pods), filtered by the API server.
    for resource in WATCHED_CHILDREN:
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR
    settings.watching.field_selectors[EVENTS] = POD_WARNINGS_SELECTOR


@kopf.on.create(*RESOURCE, id="apply-on-create")
@kopf.on.update(*RESOURCE, id="apply-on-update", field="spec")
@kopf.on.resume(*RESOURCE, id="apply-on-resume")
async def apply_children(body: kopf.Body, memo: kopf.Memo, retry: int = 0, **_: Any) -> None:
    context = _context(memo)
    await _measured(context, "apply", reconcile(context, body, retry), retry)


@kopf.on.delete(*RESOURCE, id="forget", optional=True)
async def forget(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Children go with their owner (garbage collection); only the operator's memory is cleaned."""
    _context(memo).forget(namespace or "", name)


def owner_name(body: kopf.Body) -> str | None:
    """The InferenceDeployment a managed Deployment or pod belongs to."""
    for reference in body.get("metadata", {}).get("ownerReferences", []):
        if reference.get("kind") == identity.KIND and reference.get("apiVersion") == identity.API_VERSION:
            return str(reference["name"])
    instance = body.get("metadata", {}).get("labels", {}).get(INSTANCE_LABEL)
    return str(instance) if instance else None


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED, id="follow-deployment")
async def follow_deployment(
    body: kopf.Body, type: str | None, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    name = owner_name(body)
    if name is None or namespace is None:
        return
    context = _context(memo)
    await _repair_if_tampered(context, body, type, namespace, name)
    await _measured(context, "follow-children", follow(context, namespace, name))


@kopf.on.event(*SERVICES, labels=MANAGED, id="guard-service")
@kopf.on.event(*CONFIG_MAPS, labels=MANAGED, id="guard-configmap")
@kopf.on.event(*POD_DISRUPTION_BUDGETS, labels=MANAGED, id="guard-pdb")
async def guard_child(
    body: kopf.Body, type: str | None, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    name = owner_name(body)
    if name is None or namespace is None:
        return
    await _repair_if_tampered(_context(memo), body, type, namespace, name)


async def _repair_if_tampered(
    context: OperatorContext, body: kopf.Body, type: str | None, namespace: str, name: str
) -> None:
    """Re-applies the owner's children when this one was deleted (behind the operator's back, or by
    garbage collection with its owner, which repair leaves alone) or had a field berth applied changed
    by someone else -- decided from the event's object, with no API call for the common case."""
    child = plain(body)
    if type == "DELETED":
        context.ownership.forget(child)
    elif not context.ownership.drifted(child):
        return
    await _measured(context, "repair", repair(context, namespace, name))


@kopf.on.event("v1", "pods", labels=MANAGED, id="follow-pods")
async def follow_pods(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    name = owner_name(body)
    if name is None or namespace is None:
        return
    context = _context(memo)
    await _measured(context, "follow-children", follow(context, namespace, name))


@kopf.on.event(*ENDPOINT_SLICES, labels=MANAGED, id="follow-endpoint-slices")
async def follow_endpoint_slices(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Ready counts are what the Service routes to: a slice change (a lost node's pods dropped, a
    new pod added) re-derives the status at once."""
    name = owner_name(body)
    if name is None or namespace is None:
        return
    context = _context(memo)
    await _measured(context, "follow-children", follow(context, namespace, name))


def is_pod_start_failure(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """A Warning Event that explains a pod stuck before its first container (a volume that cannot be
    mounted or attached, a sandbox that cannot be created); pod status never shows these."""
    return type != "DELETED" and body.get("reason") in START_FAILURE_EVENT_REASONS


@kopf.on.event(*EVENTS, id="follow-pod-warnings", when=is_pod_start_failure)
async def follow_pod_warnings(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Re-derives the status of the pod's InferenceDeployment, which reads the pod's Events."""
    pod = body.get("involvedObject", {}).get("name")
    if not pod or namespace is None:
        return
    context = _context(memo)
    await _measured(context, "follow-children", follow_pod(context, namespace, str(pod)))


@kopf.timer(*RESOURCE, id="resync", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def resync(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Periodic repair, the backstop for missed watch events (children's own events repair them at
    once): anything deleted or edited behind the operator's back comes back within RESYNC_SECONDS;
    an unchanged resource costs reads only."""
    if namespace is None:
        return
    context = _context(memo)
    await _measured(context, "resync", repair(context, namespace, name))
