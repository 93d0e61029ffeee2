"""The InferenceDeployment, reads, waits, samples and simulated GPU nodes the rollout tests
(test_rollouts.py, test_rollouts_replacement.py) share.

Why: a rollout is judged by what happens on the way, not only where it ends -- which replica counts
the canary Deployment went through, whether the Service ever had fewer ready endpoints than the
disruption budget allows, whether a rollout once held a state it is not in at the end. A `Sampler`
looks at the cluster in the background while a test waits, so those claims are checked against what
the cluster really went through. `gpu_node` registers a simulated GPU node of a product no other test
uses, so a test can fill every GPU of a pool and leave the shared test nodes alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from berth_operator.api.rollout import ROLLOUT_ACTION_ANNOTATION
from berth_operator.builders.deployment import CANARY_TRACK, TRACK_LABEL, canary_deployment_name
from berth_operator.builders.labels import REVISION_LABEL
from tests.cluster.simulation import KWOK_NODE_ANNOTATION, GpuPool, Simulation, node_manifests
from tests.integration.idep_reads import idep_manifest, wait_idep_ready
from tests.integration.support import ClusterAccess, KubectlError, condition, wait_for

T = TypeVar("T")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NAME = "chat"
"""The InferenceDeployment every rollout test makes (each in its own namespace)."""
TIMEOUT = 90.0
ANALYSIS_INTERVAL_SECONDS = 5
TTFT_SLO_MILLISECONDS = 500


@dataclass(frozen=True)
class Snapshot:
    """One look at a resource, its two Deployments and its Service's endpoints (one kubectl call)."""

    rollout: dict[str, Any]
    ready_replicas: int | None
    """status.readyReplicas of the InferenceDeployment."""
    primary: dict[str, Any] | None
    canary: dict[str, Any] | None
    ready_endpoints: int
    """Pods the Service routes to: ready, non-terminating endpoints, each pod once."""

    @property
    def canary_replicas(self) -> int | None:
        return None if self.canary is None else int(self.canary["spec"]["replicas"])

    @property
    def primary_replicas(self) -> int | None:
        return None if self.primary is None else int(self.primary["spec"]["replicas"])


def snapshot(cluster: ClusterAccess, namespace: str, name: str) -> Snapshot:
    """The resource, its Deployments and the EndpointSlices of its Service, read in one request."""
    listing = json.loads(
        cluster.kubectl(
            "get", "inferencedeployments,deployments,endpointslices", "-o", "json", namespace=namespace
        )
    )
    by_kind: dict[tuple[str, str], dict[str, Any]] = {}
    ready_pods: set[str] = set()
    for item in listing["items"]:
        by_kind[(item["kind"], item["metadata"]["name"])] = item
        if item["kind"] == "EndpointSlice" and item["metadata"]["labels"].get(SERVICE_NAME_LABEL) == name:
            for endpoint in item.get("endpoints") or []:
                conditions = endpoint.get("conditions", {})
                if conditions.get("ready") is True and conditions.get("terminating") is not True:
                    ready_pods.add(endpoint["targetRef"]["name"])
    resource = by_kind.get(("InferenceDeployment", name), {})
    status = resource.get("status") or {}
    return Snapshot(
        rollout=dict(status.get("rollout") or {}),
        ready_replicas=status.get("readyReplicas"),
        primary=by_kind.get(("Deployment", name)),
        canary=by_kind.get(("Deployment", canary_deployment_name(name))),
        ready_endpoints=len(ready_pods),
    )


def rollout_status(cluster: ClusterAccess, namespace: str, name: str) -> dict[str, Any]:
    """status.rollout of the resource (empty before the operator's first write)."""
    status = cluster.get("inferencedeployment", name, namespace=namespace).get("status") or {}
    return dict(status.get("rollout") or {})


def wait_rollout(
    cluster: ClusterAccess,
    namespace: str,
    name: str,
    holds: Callable[[dict[str, Any]], bool],
    timeout_seconds: float,
    what: str,
) -> dict[str, Any]:
    """Waits until status.rollout satisfies `holds`; returns it."""

    def check() -> dict[str, Any] | None:
        rollout = rollout_status(cluster, namespace, name)
        return rollout if holds(rollout) else None

    return wait_for(check, timeout_seconds, what)


def idep_events(cluster: ClusterAccess, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events recorded on the InferenceDeployment `name`, oldest first."""
    selector = f"involvedObject.kind=InferenceDeployment,involvedObject.name={name}"
    output = cluster.kubectl(
        "get", "events", f"--field-selector={selector}", "-o", "json", namespace=namespace
    )
    events = json.loads(output)["items"]
    return sorted(events, key=lambda event: event.get("lastTimestamp") or event.get("eventTime") or "")


def events_with_reason(cluster: ClusterAccess, namespace: str, name: str, reason: str) -> list[str]:
    """Messages of the resource's Events of `reason`."""
    return [
        str(event.get("message", ""))
        for event in idep_events(cluster, namespace, name)
        if event.get("reason") == reason
    ]


def template_revision(deployment: dict[str, Any] | None) -> str | None:
    """The revision a Deployment's pod template runs."""
    if deployment is None:
        return None
    revision = deployment["spec"]["template"]["metadata"].get("labels", {}).get(REVISION_LABEL)
    return None if revision is None else str(revision)


def ready_pods_by_revision(cluster: ClusterAccess, namespace: str, name: str) -> dict[tuple[str, str], int]:
    """Ready pods of the resource, counted by (track, revision); track is primary or canary."""
    counts: dict[tuple[str, str], int] = {}
    for pod in cluster.get("pods", namespace=namespace, **{"app.kubernetes.io/instance": name}):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = any(
            entry.get("type") == "Ready" and entry.get("status") == "True"
            for entry in pod.get("status", {}).get("conditions", [])
        )
        if ready:
            labels = pod["metadata"]["labels"]
            track = "canary" if labels.get(TRACK_LABEL) == CANARY_TRACK else "primary"
            key = (track, str(labels.get(REVISION_LABEL)))
            counts[key] = counts.get(key, 0) + 1
    return counts


def action_annotation(cluster: ClusterAccess, namespace: str, name: str) -> str | None:
    """The berth.dev/rollout-action annotation, while it is there."""
    resource = cluster.get("inferencedeployment", name, namespace=namespace)
    return (resource["metadata"].get("annotations") or {}).get(ROLLOUT_ACTION_ANNOTATION)


def with_model_revision(manifest: dict[str, Any], revision: str) -> dict[str, Any]:
    """`manifest` serving another revision of its model: a new berth revision, as a model swap makes."""
    spec = manifest["spec"]
    return {**manifest, "spec": {**spec, "model": {**spec["model"], "revision": revision}}}


@dataclass
class Sampler(Generic[T]):
    """Calls `sample` every `interval_seconds` in a background thread while it is entered, keeping
    (seconds since start, value) pairs; a look that kubectl fails (a read racing a write) is skipped."""

    sample: Callable[[], T]
    interval_seconds: float = 0.5
    samples: list[tuple[float, T]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                value = self.sample()
            except KubectlError:
                pass
            else:
                self.samples.append((time.monotonic() - started, value))
            self._stop.wait(self.interval_seconds)

    def __enter__(self) -> Sampler[T]:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop sampling, then take one last look: the state the block ended on is always the last
        sample, even when the background thread's last look came just before it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        started = time.monotonic()
        while time.monotonic() - started < 10:
            try:
                self.samples.append((self.samples[-1][0] if self.samples else 0.0, self.sample()))
                return
            except KubectlError:
                time.sleep(0.2)

    @property
    def values(self) -> list[T]:
        return [value for _, value in self.samples]


def distinct_in_order(values: list[T]) -> list[T]:
    """`values` with runs of the same value collapsed: the sequence of states seen."""
    collapsed: list[T] = []
    for value in values:
        if not collapsed or collapsed[-1] != value:
            collapsed.append(value)
    return collapsed


@contextmanager
def gpu_node(cluster: ClusterAccess, product: str, gpus: int, memory_mib: int) -> Iterator[str]:
    """One simulated GPU node of `product` with `gpus` GPUs, run by the cluster's KWOK (the owner
    annotation of an existing node says which), Ready before this yields its name; deleted on exit.
    Whatever runs on it must be gone before the exit, or its pods are left without a node."""
    owner = next(
        node["metadata"]["annotations"][KWOK_NODE_ANNOTATION]
        for node in cluster.get("nodes")
        if KWOK_NODE_ANNOTATION in (node["metadata"].get("annotations") or {})
    )
    pool = GpuPool(product, nodes=1, gpus_per_node=gpus, memory_mib=memory_mib)
    (manifest,) = node_manifests(replace(Simulation(gpu_pools=(pool,), cpu_nodes=0), node_owner=owner))
    node_name = str(manifest["metadata"]["name"])
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    try:
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{node_name}", "--timeout=60s")
        yield node_name
    finally:
        cluster.kubectl("delete", "node", node_name, "--ignore-not-found")


def wait_no_pods_on(cluster: ClusterAccess, node_name: str, timeout_seconds: float) -> None:
    """Waits until no pod is bound to `node_name` (deleted pods of a KWOK node go at once)."""
    wait_for(
        lambda: (
            not cluster.kubectl(
                "get", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={node_name}", "-o", "name"
            ).strip()
        ),
        timeout_seconds,
        f"no pods left on node {node_name}",
    )


def canary_manifest(
    replicas: int, steps: list[dict[str, int]], prometheus_url: str | None = None
) -> dict[str, Any]:
    """A Canary InferenceDeployment analysed every 5 s on at least 5 requests, its TTFT ceiling the
    SLO's (autoscaling itself off); without `prometheus_url` it has no Prometheus to ask."""
    autoscaling: dict[str, Any] = {"slo": {"timeToFirstTokenP95Milliseconds": TTFT_SLO_MILLISECONDS}}
    if prometheus_url is not None:
        autoscaling["prometheus"] = {"url": prometheus_url}
    rollout = {
        "strategy": "Canary",
        "steps": steps,
        "analysis": {"intervalSeconds": ANALYSIS_INTERVAL_SECONDS, "minRequests": 5},
    }
    return idep_manifest(NAME, replicas=replicas, rollout=rollout, autoscaling=autoscaling)


def start_stable(cluster: ClusterAccess, namespace: str, manifest: dict[str, Any]) -> str:
    """Applies `manifest`, waits until every replica is ready, and returns the stable revision."""
    cluster.apply(manifest, namespace=namespace)
    wait_idep_ready(cluster, namespace, NAME, manifest["spec"]["replicas"])
    rollout = wait_rollout(
        cluster,
        namespace,
        NAME,
        lambda rollout: rollout.get("phase") == "Stable" and bool(rollout.get("stableRevision")),
        TIMEOUT,
        "status.rollout Stable with a stable revision",
    )
    return str(rollout["stableRevision"])


def wait_started(cluster: ClusterAccess, namespace: str, phase: str) -> str:
    """Waits until the rollout of a new revision is in `phase`; returns the revision it rolls out."""
    rollout = wait_rollout(
        cluster,
        namespace,
        NAME,
        lambda rollout: rollout.get("phase") == phase and bool(rollout.get("canaryRevision")),
        TIMEOUT,
        f"a rollout in phase {phase}",
    )
    return str(rollout["canaryRevision"])


def wait_step_analysing(cluster: ClusterAccess, namespace: str) -> dict[str, Any]:
    """Waits until the canary's first step has its replicas ready (its pause and analysis begin)."""
    return wait_rollout(
        cluster,
        namespace,
        NAME,
        lambda rollout: rollout.get("phase") == "Canary" and bool(rollout.get("stepStartTime")),
        TIMEOUT,
        "the canary step's replicas ready (stepStartTime set)",
    )


def wait_only_primary_on(cluster: ClusterAccess, namespace: str, revision: str, replicas: int) -> None:
    """Waits until exactly `replicas` pods are ready, all of the primary Deployment on `revision`."""
    wait_for(
        lambda: ready_pods_by_revision(cluster, namespace, NAME) == {("primary", revision): replicas},
        TIMEOUT,
        f"{replicas} ready primary pods on revision {revision} and no other",
    )


def ask(cluster: ClusterAccess, namespace: str, action: str) -> None:
    """Asks the operator for a rollout action, as a user does: kubectl annotate."""
    cluster.kubectl(
        "annotate", "--overwrite", "idep", NAME, f"{ROLLOUT_ACTION_ANNOTATION}={action}", namespace=namespace
    )


def wait_progressing(cluster: ClusterAccess, namespace: str, reason: str) -> dict[str, Any]:
    """Waits until the Progressing condition has `reason` (status lags the rollout by a sync);
    returns the condition."""

    def check() -> dict[str, Any] | None:
        resource = cluster.get("inferencedeployment", NAME, namespace=namespace)
        found = condition(resource, "Progressing")
        return found if found is not None and found.get("reason") == reason else None

    return wait_for(check, 30, f"Progressing with reason {reason}")


def fewest_ready(samples: list[Snapshot]) -> tuple[int, int]:
    """The fewest ready endpoints and the fewest status.readyReplicas the samples saw."""
    endpoints = min(sample.ready_endpoints for sample in samples)
    ready = min(sample.ready_replicas for sample in samples if sample.ready_replicas is not None)
    return endpoints, ready
