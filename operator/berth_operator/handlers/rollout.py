"""The rollout planner's glue: read what the plan needs, run it, record it, and say what the
Deployments run.

`plan_rollout` is called by every path that writes the Deployments -- the reconcile, the rollout
timer (handlers/rollout_timer.py) and the autoscaler -- under the resource's rollout lock, so all
of them build the same two Deployments from one state: it reads the live primary and canary
Deployments and their pods (and, when the stable revision is no longer the primary's, the
ReplicaSet that keeps its pod template), runs Prometheus analysis when one is due (timer only),
advances the plan, writes `status.rollout` under its own field manager when it changed, emits the
Events, removes a carried-out `berth.dev/rollout-action` annotation, and returns the shape.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api.rollout import ROLLOUT_ACTION_ANNOTATION, ROLLOUT_ACTIONS
from berth_operator.api.status import AnalysisReport, RevisionFigures, RolloutStatus
from berth_operator.autoscaling.errors import PrometheusError
from berth_operator.autoscaling.prometheus import PrometheusClient
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.builders import BuildContext
from berth_operator.builders.deployment import PinnedTemplate, WorkloadShape, canary_deployment_name
from berth_operator.builders.labels import REVISION_LABEL, revision_hash, selector_string
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import ObservedResource, parse_status
from berth_operator.handlers.prometheus_access import PrometheusAccessUnavailable, prometheus_access
from berth_operator.kube import apply_status, record_event
from berth_operator.kube.kinds import DEPLOYMENT, INFERENCE_DEPLOYMENT, POD, REPLICA_SET
from berth_operator.kube.status import ROLLOUT_FIELD_MANAGER
from berth_operator.rollout.analysis import AnalysisThresholds, RevisionMetrics, judge
from berth_operator.rollout.observation import Workloads, observe_workloads, revision_of
from berth_operator.rollout.plan import advance, analysis_window
from berth_operator.rollout.revision_metrics import query_revision
from berth_operator.rollout.shape import workload_shape

logger = logging.getLogger(__name__)

DEPLOYMENT_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class RolloutPlan:
    """What the Deployments run now, and the earlier revision's template the primary may keep."""

    shape: WorkloadShape
    pinned: PinnedTemplate | None
    state: RolloutStatus


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner.get("metadata", {}).get("uid")
    return any(
        reference.get("controller") and reference.get("uid") == uid
        for reference in obj.get("metadata", {}).get("ownerReferences") or []
    )


async def _stable_template(
    context: OperatorContext, namespace: str, primary: dict[str, Any] | None, stable: str
) -> PinnedTemplate | None:
    """The stable revision's pod template: the live primary's while it still runs it, else the newest
    of the primary's ReplicaSets that does (what `kubectl rollout undo` restores)."""
    if primary is None:
        return None
    if revision_of(primary) == stable:
        return PinnedTemplate(stable, primary["spec"]["template"])
    replica_sets = await context.api.list(
        REPLICA_SET, namespace, selector_string(primary["metadata"]["name"])
    )
    keeping = [
        replica_set
        for replica_set in replica_sets
        if _owned_by(replica_set, primary)
        and replica_set.get("spec", {})
        .get("template", {})
        .get("metadata", {})
        .get("labels", {})
        .get(REVISION_LABEL)
        == stable
    ]
    if not keeping:
        return None
    newest = max(
        keeping,
        key=lambda rs: int(rs["metadata"].get("annotations", {}).get(DEPLOYMENT_REVISION_ANNOTATION, 0)),
    )
    return PinnedTemplate(stable, newest["spec"]["template"])


def thresholds_from_spec(spec: InferenceDeploymentSpec) -> AnalysisThresholds:
    """The analysis thresholds, the SLO targets standing in for latency ceilings the analysis leaves unset."""
    analysis, slo = spec.rollout.analysis, spec.autoscaling.slo
    ttft = analysis.max_time_to_first_token_p95_milliseconds or slo.time_to_first_token_p95_milliseconds
    itl = analysis.max_inter_token_latency_p95_milliseconds or slo.inter_token_latency_p95_milliseconds
    return AnalysisThresholds(
        min_requests=analysis.min_requests,
        max_error_rate=analysis.max_error_rate,
        ttft_p95_seconds=None if ttft is None else ttft / 1000,
        itl_p95_seconds=None if itl is None else itl / 1000,
        max_regression=analysis.max_regression_percent / 100,
    )


def _figures(metrics: RevisionMetrics | None) -> RevisionFigures | None:
    if metrics is None:
        return None

    def milliseconds(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 1)

    return RevisionFigures(
        requests=round(metrics.requests, 1),
        error_rate=round(min(metrics.error_rate, 1.0), 4),
        ttft_p95_milliseconds=milliseconds(metrics.ttft_p95_seconds),
        itl_p95_milliseconds=milliseconds(metrics.itl_p95_seconds),
    )


async def analyse(
    context: OperatorContext, build: BuildContext, state: RolloutStatus, window_seconds: int, now: datetime
) -> AnalysisReport:
    """Canary against stable over the window, from Prometheus; Inconclusive when it cannot say."""
    spec, owner = build.spec, build.owner
    step = state.current_step or 0

    def inconclusive(why: str) -> AnalysisReport:
        return AnalysisReport(
            time=now, step=step, window_seconds=window_seconds, verdict="Inconclusive", message=why
        )

    access = await prometheus_access(context, owner.namespace, spec)
    if isinstance(access, PrometheusAccessUnavailable):
        return inconclusive(f"{access.message} (the canary holds; promote or abort it by hand)")
    selector = SeriesSelector(namespace=owner.namespace, instance=owner.name)
    try:
        async with PrometheusClient(access) as client:
            canary, stable = await asyncio.gather(
                query_revision(client, selector, state.canary_revision or "", window_seconds),
                query_revision(client, selector, state.stable_revision or "", window_seconds),
            )
    except PrometheusError as error:
        return inconclusive(f"metrics unavailable, the canary holds: {error}")
    result = judge(canary, stable, thresholds_from_spec(spec), canary_revision=state.canary_revision)
    return AnalysisReport(
        time=now,
        step=step,
        window_seconds=window_seconds,
        verdict=result.verdict,
        message=result.message,
        canary=_figures(result.canary),
        stable=_figures(result.stable),
    )


async def _read_workloads(context: OperatorContext, namespace: str, name: str) -> Workloads:
    primary, canary, pods = await asyncio.gather(
        context.api.get(DEPLOYMENT, namespace, name),
        context.api.get(DEPLOYMENT, namespace, canary_deployment_name(name)),
        context.api.list(POD, namespace, selector_string(name)),
    )
    return Workloads(primary, canary, pods)


def _canary_share(ready_canary: int, ready_total: int) -> int | None:
    return round(100 * ready_canary / ready_total) if ready_total else None


async def plan_rollout(
    context: OperatorContext, view: ObservedResource, build: BuildContext, analyse_due: bool = False
) -> RolloutPlan:
    """Advance the rollout of `build`'s revision and say what the Deployments run. Call under
    `context.rollout_lock`. `analyse_due`: run Prometheus analysis if the plan says one is due."""
    namespace, name = view.namespace, view.name
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name) or view.body
    previous = parse_status(owner.get("status")).rollout
    annotation = (owner.get("metadata", {}).get("annotations") or {}).get(ROLLOUT_ACTION_ANNOTATION)
    action = annotation.strip().lower() if isinstance(annotation, str) else None
    now = context.clock()
    workloads = await _read_workloads(context, namespace, name)
    target = revision_hash(build)
    stable = (previous.stable_revision if previous else None) or revision_of(workloads.primary) or target
    pinned = (
        None if stable == target else await _stable_template(context, namespace, workloads.primary, stable)
    )
    observed = observe_workloads(
        now,
        target,
        build.replicas,
        workloads,
        stable_template_found=stable == target or pinned is not None,
        action=action if action in ROLLOUT_ACTIONS else None,
    )
    report = None
    if analyse_due and previous is not None:
        window = analysis_window(build.spec.rollout, previous, now)
        if window is not None:
            report = await analyse(context, build, previous, window, now)
    step = advance(build.spec.rollout, previous, observed, report)
    state = step.state.model_copy(
        update={
            "canary_replicas": observed.canary_replicas if observed.canary_exists else None,
            "canary_ready_replicas": observed.canary_ready if observed.canary_exists else None,
            "canary_share_percent": _canary_share(observed.canary_ready, observed.ready_total),
        }
    )
    if state != previous:
        await apply_status(
            context.api, namespace, name, {"rollout": state.to_wire()}, field_manager=ROLLOUT_FIELD_MANAGER
        )
        context.metrics.writes.labels(kind="InferenceDeployment", verb="status").inc()
    for event in step.events:
        if await record_event(context.api, owner, event.type, event.reason, event.message, now):
            context.metrics.writes.labels(kind="Event", verb="create").inc()
    if annotation is not None and (step.action_done or action not in ROLLOUT_ACTIONS):
        if action not in ROLLOUT_ACTIONS:
            message = (
                f"annotation {ROLLOUT_ACTION_ANNOTATION}={annotation!r} is not an action: use "
                f"{' or '.join(ROLLOUT_ACTIONS)}; removed"
            )
            await record_event(context.api, owner, "Warning", "RolloutActionIgnored", message, now)
        patch = {"metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: None}}}
        await context.api.merge_patch(INFERENCE_DEPLOYMENT, namespace, name, patch)
    shape = workload_shape(build.spec.rollout, state, observed)
    return RolloutPlan(shape, pinned, state)
