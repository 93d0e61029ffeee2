"""The autoscaler's Kopf glue: one daemon per InferenceDeployment with autoscaling enabled.

Once per `spec.autoscaling.intervalSeconds` the daemon runs `evaluate`: read and observe the resource,
query Prometheus, read its Deployments (checked to be its own), run the pure evaluation
(`autoscaling.evaluation`: the status as read in, the decision and the status to write out -- the
same function the simulation in bench/ drives), and act where the decision is made. A decision
that changes the count is recorded first as the operator's `status.desiredReplicas` -- the one
count the Deployments are built from, which survives a restart -- and the Deployments are then
converged through the reconcile's own path (`reconcile.converge`: the rollout plan splits the count
between the stable and the canary revision during a canary, and a hand-scaled Deployment is set
back, with its Event). Then the autoscaler's share of the status (status.autoscaling, conditions
SLOMet and MetricsUnavailable) goes out under its own field manager, and the Events. A daemon
rather than a Kopf timer because the interval is per resource and may change with the spec, and
because each evaluation says when the next is due -- just after the next scrape lands
(`evaluation.next_evaluation_seconds`), which a fixed-period timer cannot follow; Kopf stops it when
autoscaling is disabled or the resource goes away.

Between two evaluations the daemon reads the Ready replicas' own request gauges every
`spec.autoscaling.podSampling.intervalSeconds` (`handlers.pod_sampling`); when they rose beyond noise
over what the last evaluation saw, in this round and the one before, `act_on_samples` runs the same
evaluation at once on them (`autoscaling.live`) and acts -- through the same code -- only on a real
scale-up; anything else writes nothing, and the next regular evaluation stays due when it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import kopf

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api import resource as identity
from berth_operator.autoscaling.evaluation import (
    Evaluation,
    acted_on_live,
    max_sample_age_seconds,
    targets_from_spec,
)
from berth_operator.autoscaling.evaluation import evaluate as evaluate_status
from berth_operator.autoscaling.live import PodSample, live_signals, sustained_rise
from berth_operator.autoscaling.policy import DEFAULT_TUNING, Decision, ReplicaCounts
from berth_operator.autoscaling.prometheus import DEFAULT_TIMEOUT_SECONDS, PrometheusClient
from berth_operator.autoscaling.sampling_report import with_pod_sampling
from berth_operator.autoscaling.signals import (
    MetricsUnavailable,
    Observation,
    SeriesSelector,
    collect_signals,
)
from berth_operator.builders import BuildContext
from berth_operator.builders.children import stamp_applied_hash
from berth_operator.builders.configmap import config_map_name
from berth_operator.builders.deployment import build_canary_deployment, build_deployment
from berth_operator.builders.status import SpecVerdict
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import ObservedResource, observe
from berth_operator.handlers.pod_sampling import PodSamplingMemory, sample_replicas
from berth_operator.handlers.prometheus_access import PrometheusAccessUnavailable, prometheus_access
from berth_operator.handlers.reconcile import converge
from berth_operator.handlers.status_sync import sync_status
from berth_operator.kube import AUTOSCALER_FIELD_MANAGER, KubeApiError, apply_status, record_event
from berth_operator.kube.children import ChildConflict, check_children
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT

logger = logging.getLogger(__name__)

FALLBACK_INTERVAL_SECONDS = 15.0
"""Seconds between evaluations while the spec cannot say (not read yet, gone, or refused)."""


async def observe_signals(
    context: OperatorContext, namespace: str, name: str, spec: InferenceDeploymentSpec
) -> Observation:
    interval = spec.autoscaling.interval_seconds
    access = await prometheus_access(
        context, namespace, spec, timeout_seconds=min(DEFAULT_TIMEOUT_SECONDS, interval)
    )
    if isinstance(access, PrometheusAccessUnavailable):
        return MetricsUnavailable(access.message)
    async with PrometheusClient(access) as client:
        return await collect_signals(
            client,
            SeriesSelector(namespace=namespace, instance=name),
            rate_window_seconds=spec.autoscaling.metrics_window_seconds,
            max_sample_age_seconds=max_sample_age_seconds(interval),
        )


async def evaluate(context: OperatorContext, namespace: str, name: str) -> Decision | None:
    """One autoscaling evaluation; None when there is nothing to scale yet (or any more)."""
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
    if owner is None:
        return None
    evaluation = await evaluate_observed(context, observe(owner, context.settings))
    return None if evaluation is None else evaluation.decision


async def _ready_replicas(context: OperatorContext, build: BuildContext) -> int | None:
    """Ready replicas of the resource's Deployments (the primary, and the canary during a canary),
    each checked to be this resource's; None when the primary does not exist yet or belongs to
    someone else (the reconcile reports that as ChildConflict)."""
    config_map = config_map_name(build.owner.name)
    primary = stamp_applied_hash(build_deployment(build, config_map))
    canary = stamp_applied_hash(build_canary_deployment(build, config_map, 0))
    try:
        children = await check_children(context.api, [primary, canary])
    except ChildConflict:
        return None
    if children[0].live is None:
        return None
    return sum(int((child.live or {}).get("status", {}).get("readyReplicas") or 0) for child in children)


async def evaluate_observed(
    context: OperatorContext,
    view: ObservedResource,
    *,
    observation: Observation | None = None,
    live: bool = False,
    memory: PodSamplingMemory | None = None,
) -> Evaluation | None:
    """`evaluate` for a resource already read and observed; the whole evaluation, whose
    `next_evaluation_time` the daemon waits for. `observation`: what to evaluate on instead of
    Prometheus' answers. `live`: an evaluation on the replicas' own gauges between two regular ones,
    acted on only when it scales up (`evaluation.acted_on_live`); otherwise nothing is written and None
    is returned. `memory`: the daemon's pod-sampling memory, which a regular evaluation updates and
    whose last round the status reports."""
    if isinstance(view.build, SpecVerdict) or not view.build.spec.autoscaling.enabled:
        return None
    if not view.accepted_as_it_is:
        return None  # the reconcile has yet to accept this spec: nothing to scale yet
    build, namespace, name = view.build, view.namespace, view.name
    spec = build.spec
    if observation is None:
        observation = await observe_signals(context, namespace, name, spec)
    ready = await _ready_replicas(context, build)
    if ready is None:
        return None  # not created yet (the first reconcile will), or not ours
    # The resource's count, not the Deployment's: a hand edit there is set back, never adopted.
    current = ReplicaCounts(desired=build.replicas, ready=ready)
    previous = view.status
    now = context.clock()
    targets = targets_from_spec(spec)
    interval = spec.autoscaling.interval_seconds
    evaluation = evaluate_status(observation, targets, current, previous, now, interval)
    decision = evaluation.decision
    if live and not acted_on_live(decision):
        return None  # a hold or a scale-in waits for the next evaluation on Prometheus' windows
    memory = memory if memory is not None else PodSamplingMemory()
    if not live:
        memory.remember_evaluation(build, view.body, observation)

    if decision.apply:
        # The record first, so that a reconcile from here on builds the Deployment at the new count.
        await sync_status(context, namespace, name, view=view, desired_replicas=decision.replicas)
        build = replace(build, replicas=decision.replicas)
    # A child held by another object, or refused: the reconcile reports it and retries.
    with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
        await converge(context, view, build, workloads_only=True)

    status = with_pod_sampling(evaluation.status, memory.message(build))
    await apply_status(context.api, namespace, name, status, field_manager=AUTOSCALER_FIELD_MANAGER)
    context.metrics.writes.labels(kind="InferenceDeployment", verb="status").inc()
    for event in evaluation.events:
        await record_event(context.api, view.body, event.type, event.reason, event.message, now)
        context.metrics.writes.labels(kind="Event", verb="create").inc()
    context.metrics.autoscaling_decisions.labels(
        action=str(decision.action),
        metrics_available=str(decision.metrics_available).lower(),
        dry_run=str(targets.dry_run).lower(),
    ).inc()
    context.metrics.autoscaling_desired_replicas.labels(namespace=namespace, name=name).set(
        decision.replicas if decision.apply else current.desired
    )
    if decision.apply:
        logger.info("%s/%s: %s%s", namespace, name, "pod samples: " if live else "", decision.reason)
    return evaluation


async def act_on_samples(
    context: OperatorContext,
    memory: PodSamplingMemory,
    namespace: str,
    name: str,
    previous: Sequence[PodSample] | None,
    samples: Sequence[PodSample],
) -> Evaluation | None:
    """The replicas' gauges read between evaluations (`samples`, and `previous`, the round before):
    when both rose beyond noise over the last evaluation's (`live.sustained_rise`), the evaluation on
    the lower at once (`evaluate_observed`, live), acted on only if it scales up. The evaluation that
    was acted on, else None (nothing written)."""
    last = memory.last_signals
    held = None if last is None else sustained_rise(last, previous, samples, DEFAULT_TUNING)
    if last is None or held is None:
        return None
    owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
    if owner is None:
        return None
    view = observe(owner, context.settings)
    if isinstance(view.build, SpecVerdict) or not view.build.spec.autoscaling.pod_sampling.enabled:
        return None
    return await evaluate_observed(
        context, view, observation=live_signals(last, held), live=True, memory=memory
    )


class StopSignal(Protocol):
    """What Kopf hands a daemon as `stopped`: falsy until stopping, and waitable with a timeout."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[object]: ...


class BetweenEvaluations(Protocol):
    """What the daemon does while it waits for the next evaluation: a round every `period_seconds`
    (None: none), each over within about `round_timeout_seconds` of I/O to the replicas."""

    def period_seconds(self) -> float | None: ...

    def round_timeout_seconds(self) -> float: ...

    def run_round(self) -> Awaitable[object]: ...


async def run_every_interval(
    evaluate_once: Callable[[], Awaitable[float]],
    interval_seconds: float,
    stopped: StopSignal,
    between: BetweenEvaluations | None = None,
) -> int:
    """Evaluate, then wait the seconds the evaluation returned (from the spec's interval read afresh
    each time, so a change applies at once, and the scrapes' phase; `interval_seconds` until one
    says), until stopped; while waiting, run `between`'s rounds. An API error fails one evaluation
    (or round), never the loop, which waits the last wait again. Returns evaluations run."""
    loop = asyncio.get_running_loop()
    evaluations = 0
    while not stopped:
        try:
            interval_seconds = await evaluate_once()
        except KubeApiError as error:
            logger.warning("autoscaling evaluation failed, retrying next interval: %s", error)
        evaluations += 1
        due = loop.time() + interval_seconds
        while not stopped:
            remaining = due - loop.time()
            period = between.period_seconds() if between is not None else None
            # A round starts only if its reads of the replicas are over before the evaluation is due.
            if between is None or period is None or period + between.round_timeout_seconds() > remaining:
                await stopped.wait(max(remaining, 0.0))
                break
            await stopped.wait(period)
            if stopped:
                break
            try:
                await between.run_round()
            except KubeApiError as error:
                logger.warning("pod sampling round failed, sampling again next round: %s", error)
    return evaluations


@dataclass
class SampleRounds:
    """The daemon's rounds of pod sampling (`BetweenEvaluations`) for one resource."""

    context: OperatorContext
    memory: PodSamplingMemory
    namespace: str
    name: str

    def period_seconds(self) -> float | None:
        return self.memory.period_seconds()

    def round_timeout_seconds(self) -> float:
        return self.memory.round_timeout_seconds()

    async def run_round(self) -> Evaluation | None:
        before = self.memory.last_round
        result = await sample_replicas(self.context, self.memory, self.namespace, self.name)
        previous = None if before is None else before.samples
        return await act_on_samples(
            self.context, self.memory, self.namespace, self.name, previous, result.samples
        )


def _autoscaling_enabled(spec: kopf.Spec, **_: Any) -> bool:
    autoscaling = spec.get("autoscaling") or {}
    return bool(autoscaling.get("enabled"))


@kopf.daemon(
    identity.GROUP,
    identity.VERSION,
    identity.PLURAL,
    id="autoscaler",
    when=_autoscaling_enabled,
    cancellation_timeout=10.0,
)
async def autoscaler(
    namespace: str | None,
    name: str | None,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    context = memo.berth
    if not isinstance(context, OperatorContext) or namespace is None or name is None:
        raise kopf.PermanentError("the autoscaler needs the operator's context (python -m berth_operator)")

    memory = PodSamplingMemory()

    async def evaluate_once() -> float:
        """One evaluation of the resource as read now; returns the seconds until the next: until the
        time the evaluation named (its own run time already spent), else the spec's interval."""
        view, evaluation = None, None
        memory.forget()  # until this evaluation observes again
        try:
            owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
            if owner is not None:
                view = observe(owner, context.settings)
                evaluation = await evaluate_observed(context, view, memory=memory)
        except KubeApiError as error:
            context.metrics.reconcile_errors.labels(reason=f"api_{error.status}").inc()
            raise
        if evaluation is not None:
            return max((evaluation.next_evaluation_time - context.clock()).total_seconds(), 0.0)
        if view is None or isinstance(view.build, SpecVerdict):
            return FALLBACK_INTERVAL_SECONDS
        return float(view.build.spec.autoscaling.interval_seconds)

    rounds = SampleRounds(context, memory, namespace, name)
    await run_every_interval(evaluate_once, FALLBACK_INTERVAL_SECONDS, stopped, rounds)
