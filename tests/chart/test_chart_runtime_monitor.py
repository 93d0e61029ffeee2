"""The optional PodMonitor scrapes the runtime pods the operator builds, and its relabelings give
every series the labels the autoscaler's PromQL selects on.

The pod, its labels and the label names the queries use all come from berth_operator itself, so a
change on either side (a renamed port, a new selector label, another label in SeriesSelector) fails
here rather than in a cluster where autoscaling quietly holds with MetricsUnavailable.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.builders import BuildContext, Owner
from berth_operator.builders.pod import pod_template

from .conftest import NAMESPACE, Chart, HelmError

OWNER = Owner(name="chat-llama", namespace="team-ml", uid="0000-1111")
SPEC = {
    "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc123"},
    "resources": {"gpu": {"count": 1}, "cpu": "8", "memory": "64Gi"},
}
ENABLED = {"runtimeMetrics": {"podMonitor": {"enabled": True}}}


def runtime_pod() -> dict[str, Any]:
    """The pod template the operator creates for OWNER, as the builders make it."""
    context = BuildContext(
        owner=OWNER,
        spec=InferenceDeploymentSpec.model_validate(SPEC),
        replicas=1,
        default_runtime_image="registry.example/berth-runtime:test",
    )
    return pod_template(context, config_map_name="chat-llama-config")


def kubernetes_sd_target(pod: dict[str, Any], namespace: str, pod_name: str) -> dict[str, str]:
    """The meta labels Prometheus's Kubernetes service discovery (role: pod) gives a pod's target."""
    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod_name}
    for key, value in pod["metadata"]["labels"].items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return meta


def apply_relabelings(labels: dict[str, str], relabelings: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus's `replace` relabeling (the only action the chart uses; others fail the test)."""
    result = dict(labels)
    for rule in relabelings:
        action = rule.get("action", "replace")
        if action != "replace":
            raise AssertionError(f"relabeling action {action!r} is not simulated by this test")
        value = rule.get("separator", ";").join(result.get(name, "") for name in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match is None:
            continue
        replacement = re.sub(r"\$\{?(\d+)\}?", r"\\\1", rule.get("replacement", "$1"))
        result[rule["targetLabel"]] = match.expand(replacement)
    return result


def pod_monitor(chart: Chart, values: dict[str, Any] | None = None) -> dict[str, Any]:
    return chart.render(values or ENABLED).only("PodMonitor")


def test_no_pod_monitor_by_default(chart: Chart) -> None:
    assert chart.render().find("PodMonitor") == []


def test_pod_monitor_selects_the_runtime_pods_the_operator_builds(chart: Chart) -> None:
    monitor = pod_monitor(chart)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    wanted = monitor["spec"]["selector"]["matchLabels"]
    pod_labels = runtime_pod()["metadata"]["labels"]
    assert wanted and wanted.items() <= pod_labels.items(), (wanted, pod_labels)
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_pod_monitor_scrapes_the_runtime_metrics_port_at_its_path(chart: Chart) -> None:
    pod = runtime_pod()
    (endpoint,) = pod_monitor(chart)["spec"]["podMetricsEndpoints"]
    ports = {port["name"]: port["containerPort"] for c in pod["spec"]["containers"] for port in c["ports"]}
    assert ports[endpoint["port"]] == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert endpoint["path"] == pod["metadata"]["annotations"]["prometheus.io/path"]
    assert endpoint["interval"] == "10s"
    assert "scrapeTimeout" not in endpoint


def test_relabelings_give_series_the_labels_the_autoscaler_selects_on(chart: Chart) -> None:
    (endpoint,) = pod_monitor(chart)["spec"]["podMetricsEndpoints"]
    target = kubernetes_sd_target(runtime_pod(), OWNER.namespace, "chat-llama-7d9f-abcde")
    labels = apply_relabelings(target, endpoint["relabelings"])
    selector = SeriesSelector(namespace=OWNER.namespace, instance=OWNER.name)
    assert labels[selector.namespace_label] == OWNER.namespace
    assert labels[selector.instance_label] == OWNER.name
    assert labels["pod"] == "chat-llama-7d9f-abcde"


def test_pod_monitor_watches_only_the_watched_namespaces_when_set(chart: Chart) -> None:
    monitor = pod_monitor(chart, {**ENABLED, "watchNamespaces": ["team-ml", "team-b"]})
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-ml", "team-b"]}


def test_pod_monitor_settings(chart: Chart) -> None:
    values = {
        "runtimeMetrics": {
            "podMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "interval": "15s",
                "scrapeTimeout": "5s",
                "labels": {"release": "kube-prometheus"},
            }
        }
    }
    monitor = pod_monitor(chart, values)
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"enabled": True, "interval": "10s", "scrapeTimeout": "11s"},
            "runtimeMetrics.podMonitor.scrapeTimeout=11s is longer than "
            "runtimeMetrics.podMonitor.interval=10s",
        ),
        ({"enabled": True, "interval": "ten seconds"}, "interval"),
        ({"enabled": True, "port": "http"}, "port"),
    ],
)
def test_pod_monitor_refuses_bad_values(chart: Chart, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        chart.render({"runtimeMetrics": {"podMonitor": settings}})
