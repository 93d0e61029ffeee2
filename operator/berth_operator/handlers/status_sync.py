"""Brings an InferenceDeployment's status in line with its Deployment, pods and Service endpoints.

Called after every reconcile, by the autoscaler to record a decision (status.desiredReplicas), and
on every event of an owned Deployment, pod or EndpointSlice, and of a kubelet Warning Event about a
pod. Reads fresh state (the resource as its caller observed it is handed in, not parsed again),
derives the operator-owned status (pure, in builders.status), and writes only when it differs --
then emits Events for the transitions. One sync per resource at a time (a per-resource lock). Pod
Events are read only for pods that have not started a container yet (what held them back shows
nowhere else), so a healthy resource costs no Event reads.
"""

from __future__ import annotations

from typing import Any

from berth_operator.api.status import CONDITION_ACCEPTED
from berth_operator.builders import BuildContext
from berth_operator.builders.labels import (
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    revision_hash,
    selector_string,
)
from berth_operator.builders.pod_problems import is_awaiting_start
from berth_operator.builders.replicas import effective_replicas
from berth_operator.builders.service import endpoint_url
from berth_operator.builders.serving import endpoint_slice_selector
from berth_operator.builders.status import (
    SpecVerdict,
    StatusInputs,
    derive_status,
    owned_status,
    transition_events,
)
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import ObservedResource, observe, parse_status
from berth_operator.kube import KubeApi, apply_status, record_event
from berth_operator.kube.kinds import DEPLOYMENT, ENDPOINT_SLICE, EVENT, INFERENCE_DEPLOYMENT, POD

# Pods whose Events one sync reads at most (the first by name): status names one problem anyway.
MAX_PODS_WITH_EVENTS_READ = 5


async def start_failure_events(
    api: KubeApi, namespace: str, pods: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Warning Events of the pods that wait for their first container (none: no API call)."""
    waiting = sorted(str(pod["metadata"]["name"]) for pod in pods if is_awaiting_start(pod))
    events: list[dict[str, Any]] = []
    for pod in waiting[:MAX_PODS_WITH_EVENTS_READ]:
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod},type=Warning"
        events += await api.list(EVENT, namespace, "", field_selector=selector)
    return events


async def sync_status(
    context: OperatorContext,
    namespace: str,
    name: str,
    *,
    view: ObservedResource | None = None,
    verdict: SpecVerdict | None = None,
    generation: int | None = None,
    desired_replicas: int | None = None,
) -> bool:
    """Derive and write the status; True when something was written.

    `view` is the resource as a reconcile observed and acted on it: its spec gives the target
    revision and endpoint, so no second parse. Without one (event-driven syncs) the resource read
    here is observed instead. The status compared with, and the replicas desired, always come from
    the resource as read now, under the lock. `verdict` and `generation` come from a reconcile;
    event-driven syncs keep the last ones. `desired_replicas` is an autoscaling decision to record:
    status.desiredReplicas is where it is kept, the count the Deployment is built from from then on.
    """
    async with context.lock(namespace, name):
        owner = await context.api.get(INFERENCE_DEPLOYMENT, namespace, name)
        if owner is None:
            return False
        previous_wire: dict[str, Any] = owner.get("status") or {}
        if view is None:
            view = observe(owner, context.settings)
            previous = view.status
        else:
            previous = parse_status(previous_wire)
        if verdict is None:
            accepted = previous.condition(CONDITION_ACCEPTED)
            if accepted is None:
                return False  # never reconciled: the first reconcile writes the first status
            verdict = SpecVerdict(accepted.status == "True", accepted.reason, accepted.message)

        # A refused spec leaves the Deployment as it is, and so the count it is driven to.
        target_revision, desired, endpoint = None, previous.desired_replicas or 0, None
        if isinstance(view.build, BuildContext):
            target_revision, endpoint = revision_hash(view.build), endpoint_url(view.build)
            desired = effective_replicas(view.build.spec, previous)
        if desired_replicas is not None:
            desired = desired_replicas

        deployment = await context.api.get(DEPLOYMENT, namespace, name)
        pods = await context.api.list(POD, namespace, selector_string(name))
        derived = derive_status(
            StatusInputs(
                name=name,
                observed_generation=generation if generation is not None else previous.observed_generation,
                verdict=verdict,
                target_revision=target_revision,
                desired_replicas=desired,
                endpoint=endpoint,
                deployment=deployment,
                pods=pods,
                endpoint_slices=await context.api.list(
                    ENDPOINT_SLICE, namespace, endpoint_slice_selector(name)
                ),
                pod_events=await start_failure_events(context.api, namespace, pods),
                previous=previous,
                now=context.clock(),
            )
        )
        if owned_status(previous_wire) == owned_status(derived):
            return False
        await apply_status(context.api, namespace, name, derived)
        context.metrics.writes.labels(kind="InferenceDeployment", verb="status").inc()
        for event in transition_events(previous, derived):
            if await record_event(
                context.api, owner, event.type, event.reason, event.message, context.clock()
            ):
                context.metrics.writes.labels(kind="Event", verb="create").inc()
        return True


async def follow(context: OperatorContext, namespace: str, name: str) -> None:
    """Event-driven status sync with bursts coalesced: while one sync runs, further events only ask
    for one more run, so a rollout's flurry of pod events does not queue a sync per event."""
    if not context.claim_sync(namespace, name):
        return
    try:
        await sync_status(context, namespace, name)
        while context.sync_again(namespace, name):
            await sync_status(context, namespace, name)
    finally:
        context.release_sync(namespace, name)


async def follow_pod(context: OperatorContext, namespace: str, pod: str) -> None:
    """`follow` for the InferenceDeployment of a pod known only by name (what an Event names); a pod
    that is not berth's, or is gone, costs one read and nothing more."""
    found = await context.api.list(
        POD, namespace, f"{MANAGED_BY_LABEL}={MANAGED_BY}", field_selector=f"metadata.name={pod}"
    )
    for match in found:
        instance = match.get("metadata", {}).get("labels", {}).get(INSTANCE_LABEL)
        if instance:
            await follow(context, namespace, str(instance))
