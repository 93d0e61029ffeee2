"""The Grafana dashboard the chart ships is valid JSON, reaches Grafana's sidecar, and queries only
series that berth actually exports (a renamed metric would otherwise leave an empty panel)."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import CollectorRegistry

from berth_operator.metrics import OperatorMetrics
from berth_runtime.server.metrics import ServerMetrics

from .conftest import CHART_DIR, Chart

DASHBOARD = CHART_DIR / "dashboards" / "berth.json"
# Series names in PromQL: vLLM's "vllm:..." and berth's own "berth:..." / "berth_..." names.
SERIES = re.compile(r"\b(?:vllm:|berth:|berth_)[a-zA-Z0-9_:]+")


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    expressions += [variable.get("definition", "") for variable in dashboard["templating"]["list"]]
    return expressions


# The series each Prometheus metric type exposes, by suffix (labelled metrics have no samples
# until a label value is first used, so the series are derived from the metric families).
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum", ""),
}


def _exported_series() -> set[str]:
    """Every series the runtime and the operator export."""
    registries = [
        ServerMetrics(model_name="probe", stats_source=lambda: None).registry,
        OperatorMetrics(CollectorRegistry()).registry,
    ]
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in SERIES_SUFFIXES.get(family.type, ("",))
    }


def test_dashboard_queries_only_series_the_runtime_or_operator_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {name for expression in _expressions(dashboard) for name in SERIES.findall(expression)}
    assert queried, "the dashboard queries no berth or vLLM series"
    exported = _exported_series()
    assert queried - exported == set(), f"queried but never exported: {sorted(queried - exported)}"
    # Both halves are on the dashboard.
    assert any(name.startswith("vllm:") for name in queried)
    assert any(name.startswith("berth_operator_") for name in queried)


def test_dashboard_panels_have_unique_ids_and_sit_on_the_grid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_dashboard_config_map_carries_the_dashboard_and_the_sidecar_label(chart: Chart) -> None:
    objects = chart.render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}})
    config_map = objects.only("ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["berth.json"]) == json.loads(DASHBOARD.read_text())
    assert not chart.render().find("ConfigMap")
