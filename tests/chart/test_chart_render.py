"""The chart renders the objects each combination of values asks for, lints clean, and meets the
restricted Pod Security Standard by default."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CHART_DIR, NAMESPACE, RELEASE, Chart, HelmError

# A matrix of values that together switch every optional part of the chart on and off.
VALUES_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "ha-clusterwide": {"replicaCount": 2, "peering": {"enabled": True}},
    "ha-namespaced": {"replicaCount": 3, "peering": {"enabled": True}, "watchNamespaces": ["ml"]},
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
        "grafanaDashboard": {"enabled": True},
        "runtimeMetrics": {"podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
    },
    "no-metrics": {"metrics": {"enabled": False}},
    "no-crds": {"crds": {"enabled": False}},
    "crds-not-kept": {"crds": {"keep": False}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "platform-operator"}},
    "no-rbac": {"rbac": {"create": False}},
    "pinned-digest": {"image": {"digest": "sha256:" + "ab" * 32}},
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"team": "ml"},
        "commonLabels": {"cost-center": "gpu"},
    },
}


def test_helm_lint_is_clean(chart: Chart) -> None:
    result = chart.run("lint", "--strict", str(CHART_DIR))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("case", sorted(VALUES_MATRIX))
def test_helm_lint_is_clean_for_every_matrix_case(chart: Chart, case: str) -> None:
    result = chart.run("lint", "--strict", str(CHART_DIR), values=VALUES_MATRIX[case])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(VALUES_MATRIX))
def test_every_rendered_object_is_labelled_and_named_within_limits(chart: Chart, case: str) -> None:
    objects = chart.render(VALUES_MATRIX[case])
    assert "Deployment" in objects.kinds()
    for obj in objects:
        metadata = obj["metadata"]
        assert len(metadata["name"]) <= 63 or obj["kind"] == "CustomResourceDefinition", metadata["name"]
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE, obj["kind"]
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "berth", obj["kind"]


def test_defaults_render_the_operator_with_cluster_wide_rbac_metrics_and_crds(chart: Chart) -> None:
    objects = chart.render()
    assert objects.kinds() == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "CustomResourceDefinition",
    }
    deployment = objects.only("Deployment", "berth")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objects.only("ServiceAccount")["metadata"]["name"]
    binding = objects.only("ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "berth", "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == objects.only("ClusterRole")["metadata"]["name"]


def test_operator_pod_meets_the_restricted_pod_security_standard(chart: Chart) -> None:
    pod = chart.render().only("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for volume in pod["volumes"]:
        assert set(volume) & {"hostPath"} == set(), volume
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not security.get("privileged")
    # The read-only root filesystem leaves /tmp as the one writable path.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_liveness_probe_targets_the_operators_health_endpoint(chart: Chart) -> None:
    (container,) = chart.render({"operator": {"healthPort": 8181}}).only("Deployment")["spec"]["template"][
        "spec"
    ]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == 8181
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_image_defaults_to_app_version_and_a_digest_pins_it(chart: Chart) -> None:
    def image(values: dict[str, Any]) -> str:
        (container,) = chart.render(values).only("Deployment")["spec"]["template"]["spec"]["containers"]
        return str(container["image"])

    assert image({}) == "ghcr.io/berth-dev/berth-operator:0.1.0"
    assert image({"image": {"tag": "0.2.0-rc1"}}) == "ghcr.io/berth-dev/berth-operator:0.2.0-rc1"
    digest = "sha256:" + "0f" * 32
    assert (
        image({"image": {"tag": "ignored", "digest": digest}}) == f"ghcr.io/berth-dev/berth-operator@{digest}"
    )


def test_long_names_are_truncated_to_63_characters_without_a_trailing_dash(chart: Chart) -> None:
    long_release = "a-very-long-release-name-that-goes-on-and-on-for-ages"  # Helm's maximum: 53
    objects = chart.render({"fullnameOverride": "x" * 61 + "-yz"}, release=long_release)
    objects += chart.render({"nameOverride": "n" * 20}, release=long_release)
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), name
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63, value
    assert any(obj["metadata"]["name"].endswith("-metrics") for obj in objects)


def test_high_availability_rolls_and_peers(chart: Chart) -> None:
    objects = chart.render({"replicaCount": 2, "peering": {"enabled": True, "name": "berth-ha"}})
    deployment = objects.only("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert objects.only("ClusterKopfPeering")["metadata"]["name"] == "berth-ha"


def test_namespaced_peering_makes_one_peering_object_per_watched_namespace(chart: Chart) -> None:
    objects = chart.render({"peering": {"enabled": True}, "watchNamespaces": ["a", "b"]})
    peerings = objects.find("KopfPeering")
    assert sorted(peering["metadata"]["namespace"] for peering in peerings) == ["a", "b"]
    assert not objects.find("ClusterKopfPeering")


def test_metrics_service_selects_the_operator_pod_and_the_service_monitor_selects_the_service(
    chart: Chart,
) -> None:
    objects = chart.render(
        {
            "metrics": {
                "port": 9191,
                "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "15000ms"},
            }
        }
    )
    service = objects.only("Service")
    pod_labels = objects.only("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9191, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = objects.only("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    assert monitor["spec"]["endpoints"][0]["scrapeTimeout"] == "15000ms"


def test_metrics_off_removes_the_service_and_the_port(chart: Chart) -> None:
    objects = chart.render({"metrics": {"enabled": False}})
    assert not objects.find("Service")
    (container,) = objects.only("Deployment")["spec"]["template"]["spec"]["containers"]
    assert [port["name"] for port in container["ports"]] == ["health"]


def test_existing_service_account_is_used_and_not_created(chart: Chart) -> None:
    objects = chart.render({"serviceAccount": {"create": False, "name": "platform-operator"}})
    assert not objects.find("ServiceAccount")
    assert objects.only("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    assert objects.only("ClusterRoleBinding")["subjects"][0]["name"] == "platform-operator"


def test_rbac_off_creates_no_roles(chart: Chart) -> None:
    kinds = chart.render({"rbac": {"create": False}}).kinds()
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})


def test_scheduling_values_reach_the_pod(chart: Chart) -> None:
    values = VALUES_MATRIX["scheduling"]
    template = chart.render(values).only("Deployment")["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == values["priorityClassName"]
    assert template["metadata"]["annotations"] == values["podAnnotations"]
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["labels"]["cost-center"] == "gpu"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "replicaCount=2 needs peering.enabled=true"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.create=false needs serviceAccount.name"),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled=true needs metrics.enabled=true",
        ),
        (
            {"metrics": {"port": 8080}, "operator": {"healthPort": 8080}},
            "metrics.port and operator.healthPort are both 8080",
        ),
        (
            {"metrics": {"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "1m"}}},
            "metrics.serviceMonitor.scrapeTimeout=1m is longer than metrics.serviceMonitor.interval=30s",
        ),
        (
            {"commonLabels": {"app.kubernetes.io/name": "other"}},
            "commonLabels may not set app.kubernetes.io/name",
        ),
    ],
)
def test_contradictory_values_fail_with_a_message_naming_them(
    chart: Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError, match=message.replace(".", r"\.")):
        chart.render(values)
