"""Canary rollouts on the local control plane, judged by a real Prometheus.

Why: a canary's promises are about time and about the way there, which only a real API server,
Deployment controller and scheduler can show: a healthy canary walks its steps (the canary Deployment
at each step's count) and is promoted; a canary that breaks the SLO is rolled back within its first
step while the Service never loses more than one ready endpoint; a canary nobody can judge holds; an
annotation promotes or aborts. The canary's metrics come from stand-in exporters labelled with its
revision (tests/integration/live_metrics.py), added once the operator has named it. Rolling updates
and rollouts whose new pods cannot run are in test_rollouts_replacement.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.integration.live_metrics import LiveMetrics, prometheus_binary
from tests.integration.load_exporter import LoadProfile
from tests.integration.operator_process import OperatorProcess
from tests.integration.rollout_support import (
    NAME,
    TIMEOUT,
    TTFT_SLO_MILLISECONDS,
    Sampler,
    action_annotation,
    ask,
    canary_manifest,
    distinct_in_order,
    events_with_reason,
    fewest_ready,
    rollout_status,
    snapshot,
    start_stable,
    template_revision,
    wait_only_primary_on,
    wait_progressing,
    wait_rollout,
    wait_started,
    wait_step_analysing,
    with_model_revision,
)
from tests.integration.support import ClusterAccess, wait_for

pytestmark = pytest.mark.integration
needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None, reason="needs Debian's prometheus package (scripts/test.sh installs it)"
)

HEALTHY = LoadProfile(requests_per_second=5.0, ttft_seconds=0.1, itl_seconds=0.02)
SLOW_FIRST_TOKEN = replace(HEALTHY, ttft_seconds=2.0)


@pytest.fixture
def live(namespace: str, tmp_path: Path) -> Iterator[LiveMetrics]:
    """Prometheus for `chat` in the test's namespace, with no exporter yet: each revision's exporter is
    added once the operator has named the revision."""
    metrics = LiveMetrics(tmp_path, namespace, NAME, revisions=[])
    metrics.start(HEALTHY)
    yield metrics
    metrics.stop()
    print(f"\n----- prometheus log (shown when the test failed) -----\n{metrics.log()}")


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
    reported = wait_progressing(crds, namespace, "RolledBack")
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

    crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
    promoted = wait_started(crds, namespace, "Canary")
    wait_step_analysing(crds, namespace)
    ask(crds, namespace, "promote")
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
    ask(crds, namespace, "abort")
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
    ask(crds, namespace, "promote")
    wait_for(lambda: action_annotation(crds, namespace, NAME) is None, 15, "the annotation removed")
    ignored = events_with_reason(crds, namespace, NAME, "RolloutActionIgnored")
    assert any("promote: no canary is in progress (RolledBack)" in message for message in ignored), ignored
    assert rollout_status(crds, namespace, NAME)["phase"] == "RolledBack"
