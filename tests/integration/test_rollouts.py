"""Canary and rolling rollouts on the local control plane, judged by a real Prometheus.

Why: a rollout's promises are about time and about the way there, which only a real API server,
Deployment controller and scheduler can show: a healthy canary walks its steps (the canary Deployment
at each step's count) and is promoted; a canary that breaks the SLO is rolled back within its first
step while the Service never loses more than one ready endpoint; a canary nobody can judge holds; an
annotation promotes or aborts; a crash-looping rolling update is reverted once its Deployment misses
the progress deadline; and a rolling update on a pool with no free GPU replaces one replica at a time
where a plain Deployment's surge pod waits forever. The canary's metrics come from stand-in exporters
labelled with its revision (tests/integration/live_metrics.py), added once the operator has named it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.simulation import POD_FAIL_ENV
from tests.integration.idep_reads import idep_manifest, wait_idep_ready
from tests.integration.live_metrics import LiveMetrics, prometheus_binary
from tests.integration.load_exporter import LoadProfile
from tests.integration.operator_process import OperatorProcess
from tests.integration.rollout_support import (
    Sampler,
    Snapshot,
    action_annotation,
    distinct_in_order,
    events_with_reason,
    gpu_node,
    ready_pods_by_revision,
    rollout_status,
    snapshot,
    template_revision,
    wait_no_pods_on,
    wait_rollout,
    with_model_revision,
)
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration
needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None, reason="needs Debian's prometheus package (scripts/test.sh installs it)"
)

NAME = "chat"
TIMEOUT = 90.0
ANALYSIS_INTERVAL_SECONDS = 5
TTFT_SLO_MILLISECONDS = 500
HEALTHY = LoadProfile(requests_per_second=5.0, ttft_seconds=0.1, itl_seconds=0.02)
SLOW_FIRST_TOKEN = replace(HEALTHY, ttft_seconds=2.0)
CRASH_MESSAGE = "CUDA error: out of memory"


@pytest.fixture
def live(namespace: str, tmp_path: Path) -> Iterator[LiveMetrics]:
    """Prometheus for `chat` in the test's namespace, with no exporter yet: each revision's exporter is
    added once the operator has named the revision."""
    metrics = LiveMetrics(tmp_path, namespace, NAME, revisions=[])
    metrics.start(HEALTHY)
    yield metrics
    metrics.stop()
    print(f"\n----- prometheus log (shown when the test failed) -----\n{metrics.log()}")


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


def progressing(cluster: ClusterAccess, namespace: str) -> dict[str, Any]:
    return condition(cluster.get("inferencedeployment", NAME, namespace=namespace), "Progressing") or {}


def fewest_ready(samples: list[Snapshot]) -> tuple[int, int]:
    """The fewest ready endpoints and the fewest status.readyReplicas the samples saw."""
    endpoints = min(sample.ready_endpoints for sample in samples)
    ready = min(sample.ready_replicas for sample in samples if sample.ready_replicas is not None)
    return endpoints, ready


@needs_prometheus
def test_a_healthy_canary_walks_its_steps_and_is_promoted(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, live: LiveMetrics
) -> None:
    replicas = 4
    steps = [{"replicas": 1, "pauseSeconds": 5}, {"percent": 50, "pauseSeconds": 5}]
    manifest = canary_manifest(replicas, steps, live.url)
    stable = start_stable(crds, namespace, manifest)
    live.add_exporter(stable, HEALTHY)

    with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
        crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
        target = wait_started(crds, namespace, "Canary")
        live.add_exporter(target, HEALTHY)
        final = wait_rollout(
            crds,
            namespace,
            NAME,
            lambda rollout: rollout.get("phase") == "Stable" and rollout.get("stableRevision") == target,
            150,
            f"revision {target} promoted",
        )
        wait_only_primary_on(crds, namespace, target, replicas)
    seen = sampler.values

    # The canary Deployment ran each step's count (1, then 50% of 4), then handed every replica back.
    canary_counts = distinct_in_order([s.canary_replicas for s in seen if s.canary_replicas is not None])
    assert canary_counts[:2] == [1, 2], canary_counts
    assert canary_counts[-1] == 0 and max(canary_counts) == 2, canary_counts
    assert canary_counts[1:] == sorted(canary_counts[1:], reverse=True), canary_counts
    assert distinct_in_order(
        [s.rollout.get("currentStep") for s in seen if s.rollout.get("phase") == "Canary"]
    ) == [
        0,
        1,
    ]
    summaries = distinct_in_order([s.rollout.get("summary") for s in seen])
    assert any(str(summary).startswith("Canary 1/2") for summary in summaries), summaries
    assert any(str(summary).startswith("Canary 2/2") for summary in summaries), summaries
    assert "Promoting" in summaries and summaries[-1] == "Stable", summaries
    # The canary passed its analysis on both revisions' metrics before each step moved on.
    passes = [
        s.rollout["analysis"] for s in seen if (s.rollout.get("analysis") or {}).get("verdict") == "Pass"
    ]
    assert {analysis["step"] for analysis in passes} == {0, 1}, passes
    assert all(analysis["canary"]["requests"] >= 5 and analysis["stable"] for analysis in passes), passes

    # At the end the primary runs the new revision on every replica; the canary runs none.
    last = snapshot(crds, namespace, NAME)
    assert last.primary is not None and template_revision(last.primary) == target
    assert last.primary["spec"]["replicas"] == replicas
    assert last.canary_replicas == 0
    assert final["history"][-1]["outcome"] == "Promoted" and final["history"][-1]["revision"] == target
    assert final["summary"] == "Stable" and final.get("canaryRevision") is None
    assert len(events_with_reason(crds, namespace, NAME, "CanaryStep")) >= 3  # ready, passed, ready
    assert any(target in message for message in events_with_reason(crds, namespace, NAME, "Promoted"))
    # Capacity held: the Service never had fewer ready endpoints than the disruption budget allows.
    assert min(fewest_ready(seen)) >= replicas - 1, fewest_ready(seen)


@needs_prometheus
def test_a_canary_breaking_the_ttft_slo_is_rolled_back_within_its_first_step(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, live: LiveMetrics
) -> None:
    replicas, pause = 4, 30
    steps = [{"replicas": 1, "pauseSeconds": pause}, {"percent": 50, "pauseSeconds": pause}]
    manifest = canary_manifest(replicas, steps, live.url)
    stable = start_stable(crds, namespace, manifest)
    live.add_exporter(stable, HEALTHY)

    with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
        crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
        target = wait_started(crds, namespace, "Canary")
        live.add_exporter(target, SLOW_FIRST_TOKEN)
        step_started = time.monotonic()
        wait_step_analysing(crds, namespace)
        final = wait_rollout(
            crds, namespace, NAME, lambda rollout: rollout.get("phase") == "RolledBack", 60, "a rollback"
        )
        rolled_back_after = time.monotonic() - step_started
        wait_only_primary_on(crds, namespace, stable, replicas)
    seen = sampler.values

    assert final["failedRevision"] == target and final["stableRevision"] == stable
    assert final["analysis"]["verdict"] == "Fail"
    assert final["analysis"]["canary"]["ttftP95Milliseconds"] > TTFT_SLO_MILLISECONDS
    assert final["history"][-1]["outcome"] == "RolledBack"
    # Within the first step: it never ran more than the step's one replica, nor reached step 2, and
    # the analysis failed it long before its pause was over.
    assert max(s.canary_replicas or 0 for s in seen) == 1
    assert {s.rollout.get("currentStep") for s in seen if s.rollout.get("phase") == "Canary"} == {0}
    assert rolled_back_after < pause, rolled_back_after
    (message,) = events_with_reason(crds, namespace, NAME, "RolledBack")
    assert f"revision {target} rolled back to {stable}: analysis at step 1/2" in message
    assert re.search(rf"TTFT p95 \d+ ms > SLO {TTFT_SLO_MILLISECONDS} ms", message), message
    assert re.search(r"\d+ canary requests", message), message
    reported = wait_for(
        lambda: (lambda found: found if found.get("reason") == "RolledBack" else None)(
            progressing(crds, namespace)
        ),
        30,
        "Progressing=False, reason RolledBack",
    )
    assert reported["status"] == "False" and target in reported["message"]
    assert snapshot(crds, namespace, NAME).canary_replicas == 0
    # Capacity held throughout: never more than one ready replica short (the PDB's maxUnavailable 1).
    assert min(fewest_ready(seen)) >= replicas - 1, fewest_ready(seen)


@needs_prometheus
def test_a_canary_without_metrics_holds_at_its_first_step(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, live: LiveMetrics
) -> None:
    steps = [{"replicas": 1, "pauseSeconds": 5}, {"replicas": 2, "pauseSeconds": 5}]
    manifest = canary_manifest(2, steps, live.url)
    stable = start_stable(crds, namespace, manifest)
    live.add_exporter(stable, HEALTHY)  # Prometheus answers, but nothing reports the new revision

    with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
        crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
        target = wait_started(crds, namespace, "Canary")
        wait_step_analysing(crds, namespace)
        analysed_at: set[str] = set()

        def inconclusive_twice() -> dict[str, Any] | None:
            rollout = rollout_status(crds, namespace, NAME)
            analysis = rollout.get("analysis") or {}
            if analysis.get("verdict") == "Inconclusive":
                analysed_at.add(analysis["time"])
            return rollout if len(analysed_at) >= 3 else None

        # Three analyses: the step's pause (5 s) was over at the first, two intervals went by since.
        held = wait_for(inconclusive_twice, 60, "three Inconclusive analyses")
    seen = sampler.values

    assert held["phase"] == "Canary" and held["currentStep"] == 0
    assert held["summary"] == "Canary 1/2 Inconclusive"
    assert (
        held["analysis"]["message"]
        == f"no metrics for canary revision {target}: Prometheus has no series for it"
    )
    assert {s.rollout.get("phase") for s in seen} <= {"Stable", "Canary"}
    assert {s.canary_replicas for s in seen if s.rollout.get("phase") == "Canary"} <= {None, 1}
    assert {s.rollout.get("currentStep") for s in seen if s.rollout.get("phase") == "Canary"} == {0}
    assert not events_with_reason(crds, namespace, NAME, "Promoting")
    assert not rollout_status(crds, namespace, NAME).get("history")


def test_an_annotation_promotes_a_canary_and_another_aborts_the_next(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    # No Prometheus: the analysis is Inconclusive and the step's hour-long pause would hold forever.
    manifest = canary_manifest(2, [{"replicas": 1, "pauseSeconds": 3600}])
    stable = start_stable(crds, namespace, manifest)

    def act(action: str) -> None:
        crds.kubectl(
            "annotate", "--overwrite", "idep", NAME, f"berth.dev/rollout-action={action}", namespace=namespace
        )

    crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
    promoted = wait_started(crds, namespace, "Canary")
    wait_step_analysing(crds, namespace)
    act("promote")
    final = wait_rollout(
        crds,
        namespace,
        NAME,
        lambda rollout: rollout.get("phase") == "Stable" and rollout.get("stableRevision") == promoted,
        TIMEOUT,
        f"revision {promoted} promoted by hand",
    )
    assert action_annotation(crds, namespace, NAME) is None
    assert final["history"][-1]["outcome"] == "Promoted"
    promoting = events_with_reason(crds, namespace, NAME, "Promoting")
    assert any(f"revision {promoted} promoted by hand" in message for message in promoting), promoting
    wait_only_primary_on(crds, namespace, promoted, 2)
    assert promoted != stable

    crds.apply(with_model_revision(manifest, "v3"), namespace=namespace)
    aborted = wait_started(crds, namespace, "Canary")
    wait_step_analysing(crds, namespace)
    act("abort")
    final = wait_rollout(
        crds,
        namespace,
        NAME,
        lambda rollout: rollout.get("phase") == "RolledBack" and rollout.get("failedRevision") == aborted,
        TIMEOUT,
        f"revision {aborted} aborted by hand",
    )
    assert action_annotation(crds, namespace, NAME) is None
    assert final["stableRevision"] == promoted
    assert final["history"][-1]["outcome"] == "Aborted"
    assert any(aborted in message for message in events_with_reason(crds, namespace, NAME, "Aborted"))
    wait_only_primary_on(crds, namespace, promoted, 2)
    assert snapshot(crds, namespace, NAME).canary_replicas == 0

    # Nothing left to promote: the action is refused with an Event, and the annotation still goes.
    act("promote")
    wait_for(lambda: action_annotation(crds, namespace, NAME) is None, 15, "the annotation removed")
    ignored = events_with_reason(crds, namespace, NAME, "RolloutActionIgnored")
    assert any("promote: no canary is in progress (RolledBack)" in message for message in ignored), ignored
    assert rollout_status(crds, namespace, NAME)["phase"] == "RolledBack"


def test_a_crash_looping_rolling_update_is_reverted_after_the_progress_deadline(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    replicas, deadline = 2, 60
    rollout = {"strategy": "Rolling", "progressDeadlineSeconds": deadline}
    manifest = idep_manifest(NAME, replicas=replicas, rollout=rollout)
    stable = start_stable(crds, namespace, manifest)
    crashing = {
        **manifest,
        "spec": {**manifest["spec"], "runtime": {"env": [{"name": POD_FAIL_ENV, "value": CRASH_MESSAGE}]}},
    }

    with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
        crds.apply(crashing, namespace=namespace)
        started = time.monotonic()
        target = wait_started(crds, namespace, "Rolling")

        def crash_looping_pod() -> bool:
            return any(
                (status.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
                for pod in crds.get("pods", namespace=namespace, **{"berth.dev/revision": target})
                for status in pod.get("status", {}).get("containerStatuses", [])
            )

        wait_for(crash_looping_pod, TIMEOUT, f"a crash-looping pod of revision {target}")
        final = wait_rollout(
            crds,
            namespace,
            NAME,
            lambda rollout: rollout.get("phase") == "RolledBack",
            deadline + 60,
            "the rolling update reverted",
        )
        reverted_after = time.monotonic() - started
        wait_only_primary_on(crds, namespace, stable, replicas)
    seen = sampler.values

    assert reverted_after >= deadline, reverted_after
    assert final["failedRevision"] == target and final["stableRevision"] == stable
    assert f"not ready within progressDeadlineSeconds ({deadline} s)" in final["message"]
    assert CRASH_MESSAGE in final["message"], final["message"]
    assert final["history"][-1]["outcome"] == "RolledBack"
    reported = wait_for(
        lambda: (lambda found: found if found.get("reason") == "RolledBack" else None)(
            progressing(crds, namespace)
        ),
        30,
        "Progressing=False, reason RolledBack",
    )
    assert CRASH_MESSAGE in reported["message"]
    primary = snapshot(crds, namespace, NAME).primary
    assert template_revision(primary) == stable
    wait_for(
        lambda: not crds.get("pods", namespace=namespace, **{"berth.dev/revision": target}),
        30,
        f"no pod of revision {target} left",
    )
    # maxUnavailable 0: the crashing surge pod never cost a ready replica.
    assert min(fewest_ready(seen)) >= replicas, fewest_ready(seen)


L4, L4_MEMORY_MIB = "NVIDIA-L4", 23034
L40S, L40S_MEMORY_MIB = "NVIDIA-L40S", 46068
"""Products no other test uses: their nodes are this test's alone, every GPU of them filled."""


def plain_deployment(name: str, product: str, resources: dict[str, Any], marker: str) -> dict[str, Any]:
    """A Deployment of `resources` on `product` that rolls as Kubernetes' default would (surge one,
    none unavailable); `marker` changes its template."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"test.berth.dev/marker": marker}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": product},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {"name": "runtime", "image": "berth/runtime:test", "resources": resources}
                    ],
                },
            },
        },
    }


def waiting_for_gpu(pod: dict[str, Any]) -> bool:
    return any(
        entry.get("type") == "PodScheduled"
        and entry.get("status") == "False"
        and "Insufficient nvidia.com/gpu" in str(entry.get("message"))
        for entry in pod.get("status", {}).get("conditions", [])
    )


def test_a_rolling_update_on_a_full_gpu_pool_replaces_where_a_plain_deployment_is_stuck(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    replicas = 2
    with (
        gpu_node(crds, L4, replicas, L4_MEMORY_MIB) as idep_node,
        gpu_node(crds, L40S, replicas, L40S_MEMORY_MIB) as plain_node,
    ):
        try:
            manifest = idep_manifest(NAME, replicas=replicas)
            manifest["spec"]["resources"]["gpu"]["product"] = L4
            stable = start_stable(crds, namespace, manifest)
            runtime = snapshot(crds, namespace, NAME).primary
            assert runtime is not None
            resources = runtime["spec"]["template"]["spec"]["containers"][0]["resources"]
            crds.apply(plain_deployment("plain", L40S, resources, "v1"), namespace=namespace)
            crds.kubectl("rollout", "status", "deployment/plain", "--timeout=90s", namespace=namespace)

            with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
                crds.apply(plain_deployment("plain", L40S, resources, "v2"), namespace=namespace)
                crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
                started = time.time()
                target = wait_started(crds, namespace, "Rolling")
                final = wait_rollout(
                    crds,
                    namespace,
                    NAME,
                    lambda rollout: (
                        rollout.get("phase") == "Stable" and rollout.get("stableRevision") == target
                    ),
                    TIMEOUT,
                    f"revision {target} rolled out on the full pool",
                )
                wait_only_primary_on(crds, namespace, target, replicas)
                replaced_in = time.time() - started
            seen = sampler.values

            assert stable != target
            assert final["history"][-1]["outcome"] == "Completed"
            assert any(s.rollout.get("replacingWithoutSurge") is True for s in seen)
            assert any(s.rollout.get("summary") == "Rolling (replacing)" for s in seen)
            strategies = [
                s.primary["spec"]["strategy"]["rollingUpdate"]
                for s in seen
                if s.primary is not None and s.rollout.get("replacingWithoutSurge")
            ]
            assert {"maxSurge": 0, "maxUnavailable": 1} in strategies, strategies
            (message,) = events_with_reason(crds, namespace, NAME, "ReplacingWithoutSurge")
            assert "waits for a GPU no node has free" in message
            # Never fewer than one ready replica: replacement takes one down at a time.
            assert min(fewest_ready(seen)) >= replicas - 1, fewest_ready(seen)

            # The plain Deployment, same pod resources, same full pool: still stuck with a Pending pod.
            plain = crds.get("deployment", "plain", namespace=namespace)
            pods = crds.get("pods", namespace=namespace, app="plain")
            pending = [pod for pod in pods if waiting_for_gpu(pod)]
            assert len(pending) == 1, [pod["status"] for pod in pods]
            assert pending[0]["metadata"]["annotations"]["test.berth.dev/marker"] == "v2"
            # ... and was so for all the time the InferenceDeployment took to replace both replicas.
            pending_since = datetime.fromisoformat(
                pending[0]["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            )
            assert time.time() - pending_since.timestamp() >= replaced_in - 1, replaced_in
            assert plain["status"].get("updatedReplicas") == 1 and plain["status"].get("readyReplicas") == 2
            old = [pod for pod in pods if pod["metadata"]["annotations"]["test.berth.dev/marker"] == "v1"]
            assert len(old) == replicas
        finally:
            crds.kubectl("delete", "deployment", "plain", "--ignore-not-found", namespace=namespace)
            crds.kubectl("delete", "idep", NAME, "--ignore-not-found", "--timeout=60s", namespace=namespace)
            wait_no_pods_on(crds, idep_node, 60)
            wait_no_pods_on(crds, plain_node, 60)
