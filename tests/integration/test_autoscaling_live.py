"""The SLO autoscaler live: a real Prometheus (Debian's package) scraping stand-in replicas that run
the runtime's own /metrics code, and the operator on the local control plane.

Why: the promises of the autoscaler only mean something end to end -- a TTFT breach that
Prometheus sees scales the Deployment up within one interval; recovery scales it down only after
the stabilization window; a Prometheus outage holds the replicas and says so
(MetricsUnavailable), and its return resumes autoscaling; dryRun changes nothing but status.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from berth_operator.autoscaling.signals import SeriesSelector, signal_queries
from tests.integration.conftest import H100
from tests.integration.live_metrics import LiveMetrics, prometheus_binary
from tests.integration.load_exporter import LoadProfile
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        prometheus_binary() is None,
        reason="needs Debian's prometheus package (scripts/test.sh installs it)",
    ),
]

NAME = "chat"
INTERVAL_SECONDS = 5
WINDOW_SECONDS = 15
STABILIZATION_SECONDS = 20
TTFT_TARGET_SECONDS = 0.5
TIMEOUT = 90.0

HEALTHY = LoadProfile(requests_per_second=2.0, ttft_seconds=0.1, running=2, waiting=0)
BREACHED = LoadProfile(requests_per_second=4.0, ttft_seconds=2.0, itl_seconds=0.03, running=8, waiting=12)
SWAMPED = LoadProfile(requests_per_second=4.0, ttft_seconds=3.0, itl_seconds=0.03, running=8, waiting=400)
LIGHT = LoadProfile(requests_per_second=0.5, ttft_seconds=0.08, running=1, waiting=0)


@pytest.fixture
def live(namespace: str, tmp_path: Path) -> Iterator[LiveMetrics]:
    """Prometheus and one stand-in replica for `chat` in the test's namespace, stopped by PID after."""
    metrics = LiveMetrics(tmp_path, namespace, NAME)
    metrics.start(HEALTHY)
    yield metrics
    metrics.stop()
    print(f"\n----- prometheus log (shown when the test failed) -----\n{metrics.log()}")


def _autoscaled(prometheus_url: str, **autoscaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": NAME, "source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "revision": "main"},
            "resources": {"gpu": {"count": 1, "product": H100}},
            "replicas": 1,
            "autoscaling": {
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 4,
                "slo": {"timeToFirstTokenP95Milliseconds": int(TTFT_TARGET_SECONDS * 1000)},
                "intervalSeconds": INTERVAL_SECONDS,
                "metricsWindowSeconds": WINDOW_SECONDS,
                "scaleUpStabilizationSeconds": 0,
                "scaleDownStabilizationSeconds": STABILIZATION_SECONDS,
                "prometheus": {"url": prometheus_url},
                **autoscaling,
            },
        },
    }


def _resource(cluster: ClusterAccess, namespace: str) -> dict[str, Any]:
    return dict(cluster.get("inferencedeployment", NAME, namespace=namespace))


def _autoscaling(cluster: ClusterAccess, namespace: str) -> dict[str, Any]:
    return dict((_resource(cluster, namespace).get("status") or {}).get("autoscaling") or {})


def _deployment_replicas(cluster: ClusterAccess, namespace: str) -> int:
    return int(cluster.get("deployment", NAME, namespace=namespace)["spec"]["replicas"])


def _condition_status(cluster: ClusterAccess, namespace: str, condition_type: str) -> str | None:
    found = condition(_resource(cluster, namespace), condition_type)
    return None if found is None else str(found["status"])


def _decision(cluster: ClusterAccess, namespace: str, direction: int) -> dict[str, Any] | None:
    """The latest non-dry-run decision scaling in `direction` (+1 up, -1 down), if it is the last one."""
    decision = _autoscaling(cluster, namespace).get("lastDecision")
    if not decision or decision.get("dryRun"):
        return None
    moved = decision["to"] - decision["from"]
    return dict(decision) if moved * direction > 0 else None


def _events(cluster: ClusterAccess, namespace: str) -> list[tuple[str, str, str]]:
    events = cluster.get("events", namespace=namespace)
    return [
        (event["type"], event["reason"], event.get("message", ""))
        for event in events
        if event["involvedObject"].get("kind") == "InferenceDeployment"
    ]


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _start(cluster: ClusterAccess, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.apply(manifest, namespace=namespace)
    wait_for(
        lambda: _condition_status(cluster, namespace, "SLOMet") == "True",
        TIMEOUT,
        "the autoscaler's first evaluation with the SLO met",
    )


def test_a_ttft_breach_scales_up_within_one_interval_and_recovery_scales_down_after_the_window(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, live: LiveMetrics
) -> None:
    _start(crds, namespace, _autoscaled(live.url))
    assert _deployment_replicas(crds, namespace) == 1

    live.set_load(BREACHED)
    up = wait_for(lambda: _decision(crds, namespace, +1), TIMEOUT, "a scale-up decision")
    assert "TTFT p95" in up["reason"] and "> 500ms" in up["reason"]

    # Within one interval of the first moment Prometheus' own TTFT p95 crossed the target.
    decided_at = _epoch(up["time"])
    ttft_p95 = signal_queries(SeriesSelector(namespace, NAME), WINDOW_SECONDS)["ttft_p95_seconds"]
    crossed = [
        t for t, value in live.query_range(ttft_p95, decided_at - 60, decided_at + 1, 0.5) if value > 0.5
    ]
    assert crossed, "Prometheus never saw the breach the operator acted on"
    assert decided_at - crossed[0] <= INTERVAL_SECONDS + 2  # +1 s: decision times are whole seconds

    desired = int(_resource(crds, namespace)["status"]["desiredReplicas"])
    assert desired >= 2
    wait_for(lambda: _deployment_replicas(crds, namespace) == desired, TIMEOUT, f"Deployment at {desired}")
    assert any(reason == "ScaledUp" for _, reason, _ in _events(crds, namespace))

    live.set_load(LIGHT)
    down = wait_for(lambda: _decision(crds, namespace, -1), TIMEOUT + STABILIZATION_SECONDS, "a scale-down")
    assert _epoch(down["time"]) - decided_at >= STABILIZATION_SECONDS
    assert "survivor" in down["reason"]
    wait_for(lambda: _deployment_replicas(crds, namespace) == down["to"], TIMEOUT, "Deployment scaled down")
    assert any(reason == "ScaledDown" for _, reason, _ in _events(crds, namespace))


def test_stopping_prometheus_holds_replicas_and_restarting_it_resumes(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, live: LiveMetrics
) -> None:
    _start(crds, namespace, _autoscaled(live.url, minReplicas=2))
    wait_for(lambda: _deployment_replicas(crds, namespace) == 2, TIMEOUT, "the Deployment at minReplicas 2")

    live.stop_prometheus()
    wait_for(
        lambda: _condition_status(crds, namespace, "MetricsUnavailable") == "True",
        TIMEOUT,
        "MetricsUnavailable=True after Prometheus stopped",
    )
    held_since = _autoscaling(crds, namespace)["lastEvaluationTime"]
    wait_for(
        lambda: _autoscaling(crds, namespace)["lastEvaluationTime"] != held_since,
        TIMEOUT,
        "another evaluation without metrics",
    )
    assert _deployment_replicas(crds, namespace) == 2
    assert _condition_status(crds, namespace, "SLOMet") == "Unknown"
    assert any(reason == "MetricsUnavailable" for _, reason, _ in _events(crds, namespace))

    live.set_load(SWAMPED)
    live.start_prometheus()
    wait_for(
        lambda: _condition_status(crds, namespace, "MetricsUnavailable") == "False",
        TIMEOUT,
        "MetricsUnavailable=False after Prometheus restarted",
    )
    up = wait_for(lambda: _decision(crds, namespace, +1), TIMEOUT, "autoscaling resumed: a scale-up")
    assert up["from"] == 2


def test_dry_run_changes_nothing_but_status(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, live: LiveMetrics
) -> None:
    _start(crds, namespace, _autoscaled(live.url, dryRun=True))
    live.set_load(BREACHED)

    def would_scale() -> dict[str, Any] | None:
        decision = _autoscaling(crds, namespace).get("lastDecision")
        return dict(decision) if decision and decision.get("dryRun") else None

    decision = wait_for(would_scale, TIMEOUT, "a dry-run decision")
    assert decision["reason"].startswith(f"dry run: would scale 1 -> {decision['to']}")
    seen = _autoscaling(crds, namespace)["lastEvaluationTime"]
    wait_for(
        lambda: _autoscaling(crds, namespace)["lastEvaluationTime"] != seen, TIMEOUT, "a later evaluation"
    )
    assert _deployment_replicas(crds, namespace) == 1
    assert _resource(crds, namespace)["status"]["desiredReplicas"] == 1
    assert any(reason == "DryRunScale" for _, reason, _ in _events(crds, namespace))
