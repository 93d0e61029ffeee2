"""The local Prometheus selects and labels runtime pods exactly as the chart's PodMonitor does, so
the series carry the labels the autoscaler's PromQL selects on (no cluster needed).

The pod comes from berth_operator's own builders and the label names from its SeriesSelector, so a
renamed port, label or selector on either side fails here. Relabeling runs on Prometheus' own
engine (``promtool check service-discovery``), not on an imitation.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.builders import BuildContext, Owner
from berth_operator.builders.pod import pod_template
from tests.cluster.pod_targets import pod_targets
from tests.cluster.prometheus import (
    JOB_NAME,
    POD_MONITOR_TEMPLATE,
    chart_pod_monitor,
    pod_selector,
    prometheus_config,
    relabel_config,
    template_block,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner(name="chat-llama", namespace="team-ml", uid="0000-1111")
SPEC = {
    "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc123"},
    "resources": {"gpu": {"count": 1}, "cpu": "8", "memory": "64Gi"},
}


def _runtime_pod(
    name: str = "chat-llama-5d8f-abcde", ip: str = "10.0.0.7", phase: str = "Running"
) -> dict[str, Any]:
    """A pod of the operator's runtime Deployment, as the API server would return it."""
    context = BuildContext(
        owner=OWNER,
        spec=InferenceDeploymentSpec.model_validate(SPEC),
        replicas=1,
        default_runtime_image="registry.example/berth-runtime:test",
    )
    template = pod_template(context, config_map_name="chat-llama-runtime")
    metadata = {**copy.deepcopy(template["metadata"]), "name": name, "namespace": OWNER.namespace}
    metadata["ownerReferences"] = [{"kind": "ReplicaSet", "name": "chat-llama-5d8f", "controller": True}]
    status = {"phase": phase, "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
    return {"metadata": metadata, "spec": copy.deepcopy(template["spec"]), "status": status}


def _ports(pod: dict[str, Any]) -> dict[str, int]:
    return {
        port["name"]: int(port["containerPort"])
        for container in pod["spec"]["containers"]
        for port in container.get("ports", [])
    }


def test_the_job_relabels_with_the_charts_own_relabelings() -> None:
    _, chart_relabelings = chart_pod_monitor()
    (job,) = prometheus_config(Path("/targets.json"))["scrape_configs"]
    assert [rule["action"] for rule in chart_relabelings] == ["replace"] * 4
    # The chart's rules come last, unchanged but for Prometheus' spelling of the keys.
    assert job["relabel_configs"][-4:] == [
        {"action": "replace", "source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {
            "action": "replace",
            "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
            "target_label": "app_kubernetes_io_instance",
        },
        {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {
            "action": "replace",
            "source_labels": ["__meta_kubernetes_pod_label_berth_dev_revision"],
            "target_label": "berth_dev_revision",
        },
    ]
    assert job["relabel_configs"][-4:] == [relabel_config(rule) for rule in chart_relabelings]
    selector = SeriesSelector(namespace="any", instance="any")
    targets = {rule["target_label"] for rule in job["relabel_configs"] if "target_label" in rule}
    assert {selector.namespace_label, selector.instance_label} <= targets
    assert job["scrape_interval"] == job["scrape_timeout"] == "1s"
    assert job["metrics_path"] == "/metrics"


def test_only_pods_the_pod_monitor_selects_are_watched() -> None:
    match_labels, _ = chart_pod_monitor()
    assert match_labels.items() <= _runtime_pod()["metadata"]["labels"].items()
    assert (
        pod_selector(match_labels)
        == "app.kubernetes.io/managed-by=berth,app.kubernetes.io/name=berth-runtime"
    )


def test_template_logic_inside_a_block_is_refused_not_misread() -> None:
    template = (
        "spec:\n  relabelings:\n    - action: replace\n    {{- if .x }}\n    - action: keep\n{{- end }}\n"
    )
    with pytest.raises(ValueError, match="template logic"):
        template_block(template, "relabelings")
    with pytest.raises(ValueError, match="no line 'matchLabels:'"):
        template_block(template, "matchLabels")
    with pytest.raises(ValueError, match="not translated"):
        relabel_config({"action": "replace", "sourceLabels": ["a"], "targetLabel": "b", "extra": 1})


def test_each_container_port_is_a_target_labelled_as_kubernetes_discovery_labels_it() -> None:
    pod = _runtime_pod()
    groups = pod_targets(pod)
    by_port = {
        group["labels"]["__meta_kubernetes_pod_container_port_name"]: group
        for group in groups
        if "__meta_kubernetes_pod_container_port_name" in group["labels"]
    }
    assert set(by_port) == set(_ports(pod))
    (fetch,) = [
        group for group in groups if group["labels"]["__meta_kubernetes_pod_container_init"] == "true"
    ]
    assert fetch["targets"] == ["10.0.0.7"]  # an init container without ports: the bare pod IP
    metrics = by_port["metrics"]
    assert metrics["targets"] == [f"10.0.0.7:{_ports(pod)['metrics']}"]
    labels = metrics["labels"]
    assert labels["__meta_kubernetes_namespace"] == OWNER.namespace
    assert labels["__meta_kubernetes_pod_name"] == "chat-llama-5d8f-abcde"
    assert labels["__meta_kubernetes_pod_label_app_kubernetes_io_instance"] == OWNER.name
    assert labels["__meta_kubernetes_pod_labelpresent_app_kubernetes_io_instance"] == "true"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_phase"] == "Running"
    assert labels["__meta_kubernetes_pod_controller_kind"] == "ReplicaSet"
    assert labels["__meta_kubernetes_pod_container_init"] == "false"
    unready = _runtime_pod()
    unready["status"]["conditions"] = []
    assert pod_targets(unready)[0]["labels"]["__meta_kubernetes_pod_ready"] == "unknown"
    no_ip = _runtime_pod()
    del no_ip["status"]["podIP"]
    assert pod_targets(no_ip) == []  # as Kubernetes discovery: nothing to scrape yet


def test_an_ipv6_pod_and_a_container_without_ports_get_the_addresses_discovery_gives() -> None:
    pod = _runtime_pod(ip="fd00::7")
    pod["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    addresses = {
        group["labels"]["__meta_kubernetes_pod_container_name"]: group["targets"][0]
        for group in pod_targets(pod)
    }
    assert addresses["sidecar"] == "fd00::7"
    assert f"[fd00::7]:{_ports(pod)['metrics']}" in [group["targets"][0] for group in pod_targets(pod)]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool comes with Debian's prometheus package"
)
def test_prometheus_keeps_only_the_runtime_metrics_port_with_the_labels_the_autoscaler_selects(
    tmp_path: Path,
) -> None:
    running = _runtime_pod()
    finished = _runtime_pod(name="chat-llama-5d8f-done", ip="10.0.0.8", phase="Succeeded")
    stranger = _runtime_pod(name="not-berth", ip="10.0.0.9")
    stranger["metadata"]["labels"] = {"app": "other", "app.kubernetes.io/managed-by": "someone-else"}
    targets_file = tmp_path / "targets.json"
    targets_file.write_text(
        json.dumps([group for pod in (running, finished, stranger) for group in pod_targets(pod)])
    )
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(json.dumps(prometheus_config(targets_file)))
    result = subprocess.run(
        ["promtool", "check", "service-discovery", "--timeout=1s", str(config_file), JOB_NAME],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kept = [target for target in json.loads(result.stdout) if target["labels"]]
    selector = SeriesSelector(namespace=OWNER.namespace, instance=OWNER.name)
    assert [target["labels"] for target in kept] == [
        {
            "__address__": f"10.0.0.7:{_ports(running)['metrics']}",
            "__metrics_path__": "/metrics",
            "__scheme__": "http",
            "__scrape_interval__": "1s",
            "__scrape_timeout__": "1s",
            "job": JOB_NAME,
            "instance": f"10.0.0.7:{_ports(running)['metrics']}",
            selector.namespace_label: OWNER.namespace,
            selector.instance_label: OWNER.name,
            "pod": "chat-llama-5d8f-abcde",
            "berth_dev_revision": running["metadata"]["labels"]["berth.dev/revision"],
        }
    ]


@pytest.mark.timeout(1500)  # the first use builds Helm (scripts/ensure-helm.sh), as the chart tests do
def test_the_relabelings_read_from_the_template_are_what_helm_renders() -> None:
    helm = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure-helm.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    rendered = subprocess.run(
        [
            helm,
            "template",
            "berth",
            str(REPO_ROOT / "charts" / "berth"),
            "--show-only",
            f"templates/{POD_MONITOR_TEMPLATE.name}",
            "--set",
            "runtimeMetrics.podMonitor.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (monitor,) = [document for document in yaml.safe_load_all(rendered) if document]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    match_labels, relabelings = chart_pod_monitor()
    assert endpoint["relabelings"] == relabelings
    assert monitor["spec"]["selector"]["matchLabels"] == match_labels
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
