"""GPU economics against a real Prometheus holding a day of known series (economics_series.py).

Why: the figures rest on PromQL that only the real engine evaluates faithfully -- a presence subquery
over a day, `increase` with its extrapolation at series that start inside the window, `sum by (le)`
over two replicas' buckets. With every sample chosen by the test, the expected figures are plain
arithmetic: a replica present all day and one for the last 30 minutes are 1.5 replica-hours in the
last hour; tokens are rate x time; a TTFT that always lands in one bucket is always in, or always out.
The last test runs the operator on the local control plane and reads status.economics and the SLO-1h
printer column from the API server, then drops a target and sees its figure go (server-side apply).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.economics.collect import read_economics
from berth_operator.economics.report import economics_status, inputs_from_spec
from tests.integration.conftest import H100
from tests.integration.economics_series import (
    SAMPLE_INTERVAL_SECONDS,
    BackfilledPrometheus,
    Replica,
    prometheus_binaries,
)
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        prometheus_binaries() is None,
        reason="needs Debian's prometheus package, with promtool (scripts/test.sh installs it)",
    ),
]

DAY = 86400
NAMESPACE = "ml"
NAME = "chat"
PRICE_PER_GPU_HOUR = 2.0
OPERATOR_PRICES = {H100: PRICE_PER_GPU_HOUR}
# The evaluation time: a whole minute (both presence steps, 15 s and 60 s, on the sample grid), a
# few minutes ago so that nothing about it depends on when the test runs.
AT = (int(time.time()) // 60) * 60 - 300


def _labels(namespace: str, instance: str, pod: str) -> dict[str, str]:
    """What the chart's PodMonitor relabelings attach to a runtime pod's series."""
    return {
        "namespace": namespace,
        "app_kubernetes_io_instance": instance,
        "pod": pod,
        "model_name": instance,
    }


# Replica a: present all day (and 10 minutes before), 100 tokens/s, 1 request/s whose TTFT is 0.27 s
# -- inside the bucket (0.25, 0.3] -- and 100 inter-token intervals/s of 35 ms.
# Replica b: the last 30 minutes only, 50 tokens/s, 1 request/s at 0.8 s TTFT, 50 intervals/s of 70 ms.
# Another deployment in the namespace, which no figure may include.
REPLICAS = (
    Replica(
        _labels(NAMESPACE, NAME, "chat-a"), AT - DAY - 600, AT + 600, 100.0, ((0.27, 1.0),), ((0.035, 100.0),)
    ),
    Replica(_labels(NAMESPACE, NAME, "chat-b"), AT - 1800, AT + 600, 50.0, ((0.8, 1.0),), ((0.07, 50.0),)),
    Replica(_labels(NAMESPACE, "other", "other-a"), AT - DAY, AT, 5000.0, ((5.0, 9.0),), ((1.0, 9.0),)),
)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackfilledPrometheus]:
    server = BackfilledPrometheus(tmp_path_factory.mktemp("economics-prometheus"))
    server.start(REPLICAS)
    yield server
    server.stop()
    print(f"\n----- prometheus log (shown when a test failed) -----\n{server.log()}")


def _spec(ttft_milliseconds: int = 500, itl_milliseconds: int = 50) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": NAME, "source": "hf://org/chat"},
            "resources": {"gpu": {"count": 2, "product": H100}},
            "runtime": {"tensorParallelSize": 2},
            "autoscaling": {
                "slo": {
                    "timeToFirstTokenP95Milliseconds": ttft_milliseconds,
                    "interTokenLatencyP95Milliseconds": itl_milliseconds,
                }
            },
        }
    )


async def _economics(
    prometheus: BackfilledPrometheus, spec: InferenceDeploymentSpec, name: str = NAME
) -> Any:
    readings = await read_economics(prometheus.url, SeriesSelector(NAMESPACE, name), at=AT)
    now = datetime.fromtimestamp(AT, UTC)
    return economics_status(readings, inputs_from_spec(spec, OPERATOR_PRICES, "USD"), now)


async def test_figures_from_a_day_of_known_series(prometheus: BackfilledPrometheus) -> None:
    economics = await _economics(prometheus, _spec())
    assert "message" not in economics, economics["message"]
    assert (economics["gpusPerReplica"], economics["gpuHourlyPrice"], economics["priceSource"]) == (
        2,
        PRICE_PER_GPU_HOUR,
        "Operator",
    )
    hour, day = economics["lastHour"], economics["lastDay"]

    # Presence is sampled every 15 s (hour) / 60 s (day): within a step's share of the exact figure.
    assert hour["replicaHours"] == pytest.approx(1.0 + 0.5, abs=0.01)
    assert hour["gpuHours"] == pytest.approx(2 * 1.5, abs=0.02)
    assert day["replicaHours"] == pytest.approx(24.0 + 0.5, abs=0.05)
    assert day["gpuHours"] == pytest.approx(2 * 24.5, abs=0.1)
    # Counters: rate x time, exact (b's counter starts at 0 inside the window: no extrapolation).
    assert hour["outputTokens"] == 100 * 3600 + 50 * 1800
    assert day["outputTokens"] == 100 * DAY + 50 * 1800
    assert hour["requests"] == 3600 + 1800
    assert day["requests"] == DAY + 1800
    # Cost: GPU-hours x 2.0; per million output tokens.
    assert hour["cost"] == pytest.approx(hour["gpuHours"] * PRICE_PER_GPU_HOUR, abs=1e-3)
    assert hour["costPerMillionOutputTokens"] == pytest.approx(6.0 / 0.45, rel=0.01)
    assert day["costPerMillionOutputTokens"] == pytest.approx(98.0 / 8.73, rel=0.01)
    # TTFT 500 ms: a's requests (0.27 s) are all in, b's (0.8 s) all out.
    assert hour["ttftAttainmentPercent"] == pytest.approx(100 * 3600 / 5400, abs=0.01)
    assert day["ttftAttainmentPercent"] == pytest.approx(100 * DAY / (DAY + 1800), abs=0.01)
    # ITL 50 ms: a's intervals (35 ms) in, b's (70 ms) out.
    assert hour["itlAttainmentPercent"] == pytest.approx(100 * 360000 / 450000, abs=0.01)
    assert day["itlAttainmentPercent"] == pytest.approx(100 * 8640000 / 8730000, abs=0.01)


@pytest.mark.parametrize(
    ("ttft_milliseconds", "hour_percent"),
    [
        (300, 100 * 3600 / 5400),  # the boundary above a's requests: all of a's in
        (250, 0.0),  # the boundary below: none in
        (275, 100 * 1800 / 5400),  # halfway through (0.25, 0.3]: half of a's bucket, interpolated
        (1000, 100.0),  # both in
    ],
)
async def test_ttft_attainment_on_and_between_bucket_boundaries(
    prometheus: BackfilledPrometheus, ttft_milliseconds: int, hour_percent: float
) -> None:
    economics = await _economics(prometheus, _spec(ttft_milliseconds=ttft_milliseconds))
    assert economics["lastHour"]["ttftAttainmentPercent"] == pytest.approx(hour_percent, abs=0.01)


async def test_a_deployment_without_series_gets_no_figures_and_a_reason(
    prometheus: BackfilledPrometheus,
) -> None:
    economics = await _economics(prometheus, _spec(), name="absent")
    assert "lastHour" not in economics and "lastDay" not in economics
    assert "last hour: no vllm:num_requests_running series, so no figures" in economics["message"]


DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "berth" / "dashboards" / "berth.json"
DASHBOARD_VARIABLES = {
    "$model": ".*",
    "$gpus_per_replica": "2",
    "$gpu_hourly_price": "2.0",
    "$ttft_target": "0.5",
    "$itl_target": "0.05",
}


def _instant(prometheus: BackfilledPrometheus, promql: str) -> dict[str, float]:
    """An instant query at AT: value by model_name."""
    data = urllib.parse.urlencode({"query": promql, "time": AT}).encode()
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/query", data=data, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return {
        sample["metric"].get("model_name", ""): float(sample["value"][1]) for sample in body["data"]["result"]
    }


def test_the_dashboards_economics_panels_agree_with_the_status(prometheus: BackfilledPrometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {panel["id"]: panel for panel in dashboard["panels"]}
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {name.lstrip("$") for name in DASHBOARD_VARIABLES} <= defined

    def value(panel_id: int, ref: str) -> float:
        expr = next(t["expr"] for t in panels[panel_id]["targets"] if t["refId"] == ref)
        for variable, setting in DASHBOARD_VARIABLES.items():
            expr = expr.replace(variable, setting)
        return _instant(prometheus, expr)[NAME]

    # The dashboard sums presence steps (no `or vector(0)` per model): one step's share apart at most.
    assert value(21, "A") == pytest.approx(2 * 1.5, abs=0.05)
    assert value(21, "B") == pytest.approx(2 * 24.5, abs=0.2)
    assert value(22, "A") == 100 * 3600 + 50 * 1800
    assert value(22, "B") == 100 * DAY + 50 * 1800
    assert value(23, "A") == pytest.approx(6.0 / 0.45, rel=0.02)
    assert value(24, "B") == pytest.approx(98.0, rel=0.01)
    assert value(25, "A") == pytest.approx(3600 / 5400)
    assert value(25, "B") == pytest.approx(DAY / (DAY + 1800))
    assert value(26, "A") == pytest.approx(360000 / 450000)


def _manifest(prometheus_url: str, slo: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": NAME, "source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "revision": "main"},
            "resources": {"gpu": {"count": 2, "product": H100}},
            "runtime": {"tensorParallelSize": 2},
            # Autoscaling stays off: the economics are read all the same.
            "autoscaling": {"slo": slo, "prometheus": {"url": prometheus_url}},
        },
    }


def _economics_of(cluster: ClusterAccess, namespace: str) -> dict[str, Any]:
    resource = cluster.get("inferencedeployment", NAME, namespace=namespace)
    return dict((resource.get("status") or {}).get("economics") or {})


def test_the_operator_writes_economics_and_the_slo_column(
    crds: ClusterAccess, namespace: str, tmp_path: Path
) -> None:
    # One replica present all day and on into the next 15 minutes, so whenever the operator looks
    # its windows hold the same: 3 of 4 requests within 500 ms, 9 of 10 intervals within 50 ms.
    now = (int(time.time()) // SAMPLE_INTERVAL_SECONDS) * SAMPLE_INTERVAL_SECONDS
    steady = Replica(
        _labels(namespace, NAME, "chat-a"),
        now - DAY - 1200,
        now + 900,
        100.0,
        ((0.27, 3.0), (0.8, 1.0)),
        ((0.035, 90.0), (0.07, 10.0)),
    )
    prometheus = BackfilledPrometheus(tmp_path / "prometheus")
    prometheus.work_dir.mkdir()
    prometheus.start([steady])
    operator = OperatorProcess(
        crds.kubeconfig,
        namespace,
        tmp_path / "operator.log",
        extra_env={"BERTH_GPU_HOURLY_PRICES": json.dumps(OPERATOR_PRICES), "BERTH_GPU_PRICE_CURRENCY": "USD"},
    )
    operator.start()
    try:
        crds.apply(
            _manifest(
                prometheus.url,
                {"timeToFirstTokenP95Milliseconds": 500, "interTokenLatencyP95Milliseconds": 50},
            ),
            namespace=namespace,
        )
        # The first look comes 5-60 s after the operator sees the resource.
        economics = wait_for(
            lambda: _economics_of(crds, namespace).get("lastHour") and _economics_of(crds, namespace),
            120,
            "status.economics from the operator's first look",
        )
        hour, day = economics["lastHour"], economics["lastDay"]
        assert hour["replicaHours"] == pytest.approx(1.0, abs=0.01)
        assert hour["gpuHours"] == pytest.approx(2.0, abs=0.02)
        assert hour["outputTokens"] == pytest.approx(360000, rel=0.001)
        assert hour["cost"] == pytest.approx(4.0, abs=0.05)
        assert hour["costPerMillionOutputTokens"] == pytest.approx(4.0 / 0.36, rel=0.01)
        assert hour["ttftAttainmentPercent"] == pytest.approx(75.0, abs=0.01)
        assert hour["itlAttainmentPercent"] == pytest.approx(90.0, abs=0.01)
        assert day["replicaHours"] == pytest.approx(24.0, abs=0.05)
        assert (economics["priceSource"], economics["currency"]) == ("Operator", "USD")

        # The printer column shows the last hour's TTFT attainment.
        table = crds.kubectl("get", "inferencedeployment", NAME, namespace=namespace)
        header, row = table.splitlines()[:2]
        # Upper case, as kubectl prints column names; columns start where their names do (empty
        # cells leave gaps, so the row is read by position, not by splitting).
        assert " SLO-1H " in header
        start = header.index(" SLO-1H ") + 1
        assert row[start:].split()[0] == "75"

        # status.economics is berth-economics' alone, on the status subresource.
        shown = json.loads(
            crds.kubectl(
                "get", "inferencedeployment", NAME, "-o", "json", "--show-managed-fields", namespace=namespace
            )
        )
        owners = [
            entry
            for entry in shown["metadata"]["managedFields"]
            if "f:economics" in entry.get("fieldsV1", {}).get("f:status", {})
        ]
        assert [(entry["manager"], entry.get("subresource")) for entry in owners] == [
            ("berth-economics", "status")
        ]

        # Drop the ITL target: the next look leaves the ITL figures out, and the API server removes
        # them (fields the manager no longer applies go), while the rest stays.
        crds.apply(_manifest(prometheus.url, {"timeToFirstTokenP95Milliseconds": 500}), namespace=namespace)
        after = wait_for(
            lambda: (
                (current := _economics_of(crds, namespace)).get("lastHour")
                and "itlAttainmentPercent" not in current["lastHour"]
                and current
            ),
            100,
            "status.economics without the ITL figures",
        )
        assert "itlAttainmentPercent" not in after["lastDay"] and "itlTargetMilliseconds" not in after
        assert after["lastHour"]["ttftAttainmentPercent"] == pytest.approx(75.0, abs=0.01)
        assert "no ITL target" in after["message"]
    finally:
        try:
            crds.kubectl("delete", "inferencedeployments", "--all", "--timeout=60s", namespace=namespace)
        finally:
            operator.stop()
            prometheus.stop()
            # Captured by pytest: shown only when the test failed.
            print(f"\n----- operator log -----\n{operator.log()}")
            print(f"\n----- prometheus log -----\n{prometheus.log()}")
