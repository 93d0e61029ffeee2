"""Reconciles one InferenceDeployment: check the spec, build the children, check they are ours,
apply what changed, then sync the status. Kopf-independent except for the two exceptions that tell
Kopf when to retry.

Whatever stops the children from being applied ends in status (Accepted=False with the cause) and
an Event, never only in the operator's log: a child name held by an object berth did not create
(ChildConflict), or a child the API server refuses although the spec passed admission (ApplyFailed,
with the API server's own message, which names the field). Both are retried with a growing delay,
since either can clear without an edit of the spec (the object in the way is deleted, an admission
policy changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import kopf

from berth_operator.api.status import RolloutStatus
from berth_operator.builders import BuildContext, build_children
from berth_operator.builders.labels import revision_hash
from berth_operator.builders.replicas import replicas_reverted_message
from berth_operator.builders.route import route_child_names
from berth_operator.builders.status import SpecVerdict
from berth_operator.handlers.checks import check_gpu_product, check_model_cache, check_name, check_secrets
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import ObservedResource, observe
from berth_operator.handlers.rollout import RolloutPlan, plan_rollout
from berth_operator.handlers.status_sync import sync_status
from berth_operator.kube import ApplyResult, KubeApiError, record_event
from berth_operator.kube.children import (
    ChildConflict,
    ObservedChild,
    apply_checked,
    check_children,
    foreign_reason,
)
from berth_operator.kube.kinds import HTTP_ROUTE, INFERENCE_DEPLOYMENT, SERVICE
from berth_operator.rollout.traffic import traffic_split

REASON_APPLIED = "Applied"
REASON_REPLICAS_REVERTED = "ReplicasReverted"
REASON_CHILD_CONFLICT = "ChildConflict"
REASON_APPLY_FAILED = "ApplyFailed"
RETRY_BASE_SECONDS = 15.0
RETRY_MAX_SECONDS = 300.0
# API answers that are about this request, not the server's health: retried quietly.
_TRANSIENT_CLIENT_ERRORS = frozenset({408, 409, 429})


def retry_delay(retry: int) -> float:
    """Seconds before retry number `retry` (0 for the first): doubling from 15 s, at most 5 minutes."""
    return min(RETRY_BASE_SECONDS * 2.0 ** min(retry, 16), RETRY_MAX_SECONDS)


def is_refusal(error: KubeApiError) -> bool:
    """Whether the API server refused the request itself (4xx: invalid, forbidden by RBAC or an
    admission policy) rather than failing to answer it (unreachable, 5xx, throttled, conflict)."""
    return 400 <= error.status < 500 and error.status not in _TRANSIENT_CLIENT_ERRORS


def _describe(results: list[ApplyResult]) -> str:
    return ", ".join(f"{result.outcome} {result.kind} {result.name}" for result in results)


async def _report(context: OperatorContext, view: ObservedResource, verdict: SpecVerdict) -> None:
    await sync_status(
        context, view.namespace, view.name, view=view, verdict=verdict, generation=view.generation
    )


async def _refuse_and_retry(
    context: OperatorContext, view: ObservedResource, verdict: SpecVerdict, retry: int
) -> NoReturn:
    await _report(context, view, verdict)
    raise kopf.TemporaryError(verdict.message, delay=retry_delay(retry))


async def apply_observed(
    context: OperatorContext, view: ObservedResource, build: BuildContext, child: ObservedChild
) -> ApplyResult:
    """Apply one child checked to be ours, if it differs from what `build` makes of it, and count the
    write. The one place where a Deployment scaled by hand is set back to the resource's count: one
    Normal Event says what was reverted and how to scale instead."""
    result = await apply_checked(context.api, child, context.ownership)
    if result.outcome != "unchanged":
        context.metrics.writes.labels(kind=result.kind, verb="apply").inc()
    if result.replaced_replicas is not None:
        message = replicas_reverted_message(build, result.replaced_replicas)
        if await record_event(
            context.api, view.body, "Normal", REASON_REPLICAS_REVERTED, message, context.clock()
        ):
            context.metrics.writes.labels(kind="Event", verb="create").inc()
    return result


async def _apply_all(
    context: OperatorContext,
    view: ObservedResource,
    build: BuildContext,
    retry: int,
    plan: RolloutPlan,
    workloads_only: bool = False,
) -> list[ApplyResult]:
    """Check every child is ours (or, `workloads_only`, every Deployment), then apply each; a conflict
    or a refusal is reported and retried."""
    split = traffic_split(build.spec.rollout, plan.state, build.replicas)
    children = build_children(build, plan.shape, plan.pinned, split)
    if workloads_only:
        children = [child for child in children if child["kind"] == "Deployment"]
    try:
        observed = await check_children(context.api, children)
    except ChildConflict as conflict:
        verdict = SpecVerdict(False, REASON_CHILD_CONFLICT, str(conflict))
        await _refuse_and_retry(context, view, verdict, retry)
    results = []
    for child in observed:
        try:
            results.append(await apply_observed(context, view, build, child))
        except KubeApiError as error:
            if not is_refusal(error):
                raise
            kind, metadata = child.desired["kind"], child.desired["metadata"]
            message = (
                f"the API server refused {kind} {metadata['namespace']}/{metadata['name']}: "
                f"{error.message or error.reason}"
            )
            if kind == "HTTPRoute" and error.status == 404:
                message = (
                    "spec.serving.httpRoute needs the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute), "
                    "which this cluster does not serve: install its CRDs, or remove spec.serving.httpRoute"
                )
            await _refuse_and_retry(context, view, SpecVerdict(False, REASON_APPLY_FAILED, message), retry)
    return results


async def _remove_route(context: OperatorContext, view: ObservedResource, build: BuildContext) -> None:
    """The HTTPRoute and its Services go when the spec no longer asks for a route (only berth's own,
    checked by owner reference; a cluster without the Gateway API has none to read). Only a spec
    change drops a route, so the reconcile looks, not every converge."""
    desired_owner = {
        "kind": "Service",
        "metadata": {"name": "", "ownerReferences": [build.owner.reference()]},
    }
    for kind_name, name in route_child_names(view.name):
        kind = HTTP_ROUTE if kind_name == "HTTPRoute" else SERVICE
        try:
            live = await context.api.get(kind, view.namespace, name)
        except KubeApiError as error:
            if error.status == 404:
                continue  # the Gateway API is not installed: no route can exist
            raise
        if live is not None and foreign_reason(desired_owner, live) is None:
            await context.api.delete(kind, view.namespace, name)
            context.metrics.writes.labels(kind=kind_name, verb="delete").inc()


@dataclass(frozen=True)
class Converged:
    """What one converge did to the children, and where the rollout stands after it."""

    results: list[ApplyResult]
    rollout: RolloutStatus


async def converge(
    context: OperatorContext,
    view: ObservedResource,
    build: BuildContext,
    retry: int = 0,
    *,
    analyse: bool = False,
    workloads_only: bool = False,
) -> Converged:
    """Plan the rollout and apply the children it shapes: the one way the Deployments are written --
    by the reconcile (every child), the rollout timer (with `analyse`) and the autoscaler (its new
    count in `build`; `workloads_only`, the Deployments)."""
    async with context.rollout_lock(view.namespace, view.name):
        plan = await plan_rollout(context, view, build, analyse_due=analyse)
        results = await _apply_all(context, view, build, retry, plan, workloads_only)
        return Converged(results, plan.state)


async def reconcile(
    context: OperatorContext, raw_body: Mapping[str, Any], retry: int = 0
) -> list[ApplyResult]:
    """Apply the children of one InferenceDeployment; returns what was done to each.

    Raises kopf.PermanentError for a spec that can never work (fixed only by editing it) and
    kopf.TemporaryError while a referenced Secret is missing (it may be created later), while a
    child's name is held by an object that is not ours, or while the API server refuses a child;
    `retry` (Kopf's count of earlier attempts) makes the delay grow.
    """
    view = observe(raw_body, context.settings)
    namespace, name = view.namespace, view.name
    context.track(namespace, name)

    invalid_name = check_name(name)
    if invalid_name is not None:
        await _report(context, view, invalid_name)
        raise kopf.PermanentError(invalid_name.message)
    if isinstance(view.build, SpecVerdict):
        await _report(context, view, view.build)
        raise kopf.PermanentError(view.build.message)
    build = view.build
    unsupported = check_gpu_product(build.spec, context.settings) or check_model_cache(
        build.spec, context.settings
    )
    if unsupported is not None:
        await _report(context, view, unsupported)
        raise kopf.PermanentError(unsupported.message)
    missing = await check_secrets(context.api, namespace, build.spec)
    if missing is not None:
        await _report(context, view, missing)
        raise kopf.TemporaryError(missing.message, delay=context.settings.missing_secret_retry_seconds)

    results = (await converge(context, view, build, retry)).results
    if build.spec.serving.http_route is None:
        await _remove_route(context, view, build)
    # A Deployment only set back to its count has its own Event (ReplicasReverted).
    changed = [r for r in results if r.outcome != "unchanged" and r.replaced_replicas is None]
    revision = revision_hash(build)
    if changed:
        message = f"revision {revision}: {_describe(changed)}"
        if await record_event(context.api, view.body, "Normal", REASON_APPLIED, message, context.clock()):
            context.metrics.writes.labels(kind="Event", verb="create").inc()
    await _report(context, view, SpecVerdict(True, REASON_APPLIED, f"revision {revision} applied"))
    return results


async def repair(context: OperatorContext, namespace: str, name: str) -> list[ApplyResult]:
    """Reconcile an InferenceDeployment again from its stored state: re-creates children deleted
    or changed behind the operator's back. A refused spec is already reported in its status, so
    here it is not an error; a resource being deleted is left alone."""
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return []
    try:
        return await reconcile(context, owner)
    except (kopf.PermanentError, kopf.TemporaryError):
        return []
