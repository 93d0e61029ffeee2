"""The chart's values reach the operator: the environment the chart renders, parsed by the
operator's own settings code, gives back the values, and every BERTH_* variable the operator reads
is one the chart sets (a new setting cannot be left unreachable from Helm)."""

from __future__ import annotations

import inspect
import re
from typing import Any

from berth_operator import settings as settings_module
from berth_operator.settings import OperatorSettings

from .conftest import Chart


def _rendered_environment(
    chart: Chart, values: dict[str, Any]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    (container,) = chart.render(values).only("Deployment")["spec"]["template"]["spec"]["containers"]
    plain = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    return plain, container["env"]


def test_every_operator_setting_is_set_by_the_chart(chart: Chart) -> None:
    read_by_operator = set(re.findall(r"\bBERTH_[A-Z_]+\b", inspect.getsource(settings_module)))
    environment, _ = _rendered_environment(chart, {})
    assert read_by_operator, "found no BERTH_* variables in berth_operator.settings"
    assert read_by_operator == {name for name in environment if name.startswith("BERTH_")}


def test_default_values_parse_to_the_operators_defaults_except_the_prometheus_url(chart: Chart) -> None:
    environment, _ = _rendered_environment(chart, {})
    parsed = OperatorSettings.from_environment(environment)
    assert parsed == OperatorSettings(prometheus_url="http://prometheus-operated.monitoring.svc:9090")


def test_values_reach_the_operator_settings(chart: Chart) -> None:
    environment, env = _rendered_environment(
        chart,
        {
            "watchNamespaces": ["team-a", "team-b"],
            "peering": {"enabled": True, "name": "berth-ha"},
            "metrics": {"enabled": False, "port": 9191},
            "operator": {
                "logLevel": "DEBUG",
                "prometheusUrl": "",
                "runtimeImage": "registry.example.com/berth-runtime:0.2.0",
                "gpuProducts": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-L4"],
                "missingSecretRetrySeconds": 2.5,
                "apiConcurrency": 8,
                "healthPort": 8181,
            },
        },
    )
    assert OperatorSettings.from_environment(environment) == OperatorSettings(
        watch_namespaces=("team-a", "team-b"),
        gpu_products=("NVIDIA-H100-80GB-HBM3", "NVIDIA-L4"),
        runtime_image="registry.example.com/berth-runtime:0.2.0",
        prometheus_url=None,
        health_port=8181,
        metrics_enabled=False,
        metrics_port=9191,
        peering_name="berth-ha",
        log_level="DEBUG",
        missing_secret_retry_seconds=2.5,
        api_concurrency=8,
    )
    # Kopf names each replica in the peering object after its pod.
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env


def test_extra_env_is_appended_after_the_charts_settings(chart: Chart) -> None:
    extra = [{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}]
    _, env = _rendered_environment(chart, {"operator": {"extraEnv": extra}})
    assert env[-1] == extra[0]
