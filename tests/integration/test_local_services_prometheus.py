"""Prometheus, the local control plane's stand-in for a cluster's, against a real API server: it
discovers the runtime pods through the API server with the labels the autoscaler selects on, scrapes
their metrics port only, and drops a pod's target when the pod goes. (The service proxy, the other
stand-in for a cluster service, is in test_local_services.py.)"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from berth_operator.autoscaling.signals import SeriesSelector
from tests.cluster import processes
from tests.cluster.prometheus import JOB_NAME, start_prometheus, stop_prometheus
from tests.integration.idep_reads import idep_manifest
from tests.integration.live_metrics import prometheus_binary
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 60.0


@pytest.mark.skipif(
    prometheus_binary() is None, reason="prometheus is not installed (scripts/test.sh installs it)"
)
def test_prometheus_discovers_the_runtime_pods_with_the_labels_the_autoscaler_selects(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    crds.apply(idep_manifest("scraped", replicas=2), namespace=namespace)
    pid, url = start_prometheus(crds.kubeconfig, tmp_path / "prometheus", namespaces=[namespace])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    try:
        selector = SeriesSelector(namespace=namespace, instance="scraped")

        def pods() -> dict[str, int]:
            """Running pods with an IP, by name, with their metrics port."""
            found = crds.get("pods", namespace=namespace, **{"app.kubernetes.io/instance": "scraped"})
            return {
                pod["metadata"]["name"]: next(
                    port["containerPort"]
                    for container in pod["spec"]["containers"]
                    for port in container.get("ports", [])
                    if port["name"] == "metrics"
                )
                for pod in found
                if pod["status"].get("podIP") and not pod["metadata"].get("deletionTimestamp")
            }

        def targets_match(expected_count: int) -> list[dict[str, Any]] | None:
            running = pods()
            active = _get(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
            ours = [t for t in active if t["labels"].get(selector.namespace_label) == namespace]
            expected = {(name, f":{port}/metrics") for name, port in running.items()}
            seen = {(t["labels"].get("pod"), t["scrapeUrl"][t["scrapeUrl"].rindex(":") :]) for t in ours}
            if len(running) == expected_count and seen == expected:
                return ours
            return None

        ours = wait_for(
            lambda: targets_match(2), TIMEOUT, "a scrape target per runtime pod, metrics port only"
        )
        for target in ours:
            assert target["labels"][selector.instance_label] == "scraped"
            assert target["labels"]["job"] == JOB_NAME
        # The series carry exactly what the autoscaler's matchers select (up=0: KWOK pods do not serve).
        wait_for(
            lambda: len(_query(url, f"up{selector.matchers()}")) == 2,
            TIMEOUT,
            "up series under the autoscaler's matchers",
        )

        crds.kubectl("scale", "inferencedeployment", "scraped", "--replicas=1", namespace=namespace)
        wait_for(lambda: targets_match(1), TIMEOUT, "the removed pod's target to go")
    finally:
        stop_prometheus(pid, tmp_path / "prometheus")
    # One PID stands for the discovery and Prometheus, its child: stopping it stops both.
    assert len(children) == 1, children
    assert not processes.is_alive(pid) and not processes.is_alive(int(children[0]))


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    return list(_get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")["data"]["result"])
