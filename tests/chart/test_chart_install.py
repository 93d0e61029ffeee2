"""The chart on a real control plane: `helm install` creates every object (the operator pod passes
the restricted Pod Security admission), the operator running with the chart's ServiceAccount
identity and environment reconciles an InferenceDeployment to Ready without a single 403, and
`helm uninstall` removes everything but the CRDs that crds.keep protects.

The chart gets a control plane of its own (tests/cluster, a small simulation): it installs and
deletes the cluster-wide CRD, which must not pull the rug from under the other integration tests.
The operator runs as a local process, not as the chart's pod (there is no image to pull here), but
with the chart's exact environment and a token of the chart's ServiceAccount, so every API call it
makes is authorized by the chart's RBAC alone.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import launcher
from tests.cluster.simulation import DEFAULT_GPU_PRODUCT, GpuPool, Simulation
from tests.integration.support import ClusterAccess, KubectlError, wait_for

from .chart_operator import (
    ChartOperator,
    assert_no_refusals,
    logs_shown_on_failure,
    service_account_kubeconfig,
)
from .conftest import CHART_DIR, Chart

pytestmark = pytest.mark.integration

RELEASE = "berth"
OPERATOR_NAMESPACE = "berth-system"
CRD = "customresourcedefinition/inferencedeployments.berth.dev"
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def chart_cluster() -> Iterator[ClusterAccess]:
    running = launcher.up(
        f"chart-{os.getpid()}",
        Simulation(
            gpu_pools=(GpuPool(DEFAULT_GPU_PRODUCT, nodes=1, gpus_per_node=8),), ready_delay_seconds=1.0
        ),
    )
    try:
        yield ClusterAccess(running.kubeconfig, running.kubectl, local=True)
    finally:
        launcher.down(running.name)


class HelmOnCluster:
    """The pinned Helm CLI pointed at one cluster."""

    def __init__(self, chart: Chart, cluster: ClusterAccess) -> None:
        self.chart = chart
        self.cluster = cluster

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            [self.chart.helm, f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result.stdout

    def install(self, values: dict[str, Any]) -> str:
        values_file = self.chart.values_dir / f"install-{time.monotonic_ns()}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        return self(
            "install",
            RELEASE,
            str(CHART_DIR),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--values",
            str(values_file),
        )

    def manifest(self) -> list[dict[str, Any]]:
        text = self("get", "manifest", RELEASE, "--namespace", OPERATOR_NAMESPACE)
        return [document for document in yaml.safe_load_all(text) if document]


def _served(cluster: ClusterAccess) -> bool:
    """Whether the API server lists InferenceDeployments: a CRD Helm just created reaches discovery a
    moment after it exists (and, on a loaded machine, after kubectl's one retry), so `kubectl get`
    right after `helm install` can fail with "the server doesn't have a resource type"."""
    try:
        cluster.kubectl("get", "inferencedeployments", "--all-namespaces")
    except KubectlError:
        return False
    return True


def _reference(obj: dict[str, Any]) -> tuple[str, str, str | None]:
    """(kind.group, name, namespace) as kubectl takes them."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = f"{obj['kind']}.{group}" if group else obj["kind"]
    return kind, obj["metadata"]["name"], obj["metadata"].get("namespace")


def _exists(cluster: ClusterAccess, obj: dict[str, Any]) -> bool:
    kind, name, namespace = _reference(obj)
    return cluster.get_or_none(kind, name, namespace=namespace) is not None


def _peer_priorities(cluster: ClusterAccess, pod_names: list[str]) -> dict[str, int] | None:
    """The priorities the named replicas announced in the release's ClusterKopfPeering, once all did."""
    status = cluster.get("clusterkopfpeering", "berth").get("status") or {}
    if not all(name in status for name in pod_names):
        return None
    return {name: int(status[name]["priority"]) for name in pod_names}


def _inference_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "source": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "resources": {"gpu": {"count": 1, "product": DEFAULT_GPU_PRODUCT}},
        },
    }


def _chart_operator(cluster: ClusterAccess, helm: HelmOnCluster, log_path: Path) -> ChartOperator:
    """An operator process with the release's Deployment environment and ServiceAccount identity."""
    (deployment,) = [obj for obj in helm.manifest() if obj["kind"] == "Deployment"]
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = service_account_kubeconfig(
        cluster, OPERATOR_NAMESPACE, service_account, log_path.with_suffix(".kubeconfig")
    )
    return ChartOperator(deployment, kubeconfig, log_path)


def _wait_ready(cluster: ClusterAccess, namespace: str, name: str, operators: list[ChartOperator]) -> None:
    def ready() -> dict[str, Any] | None:
        status = cluster.get("inferencedeployment", name, namespace=namespace).get("status") or {}
        return status if status.get("phase") == "Ready" and status.get("readyReplicas") == 1 else None

    with logs_shown_on_failure(operators):
        wait_for(ready, TIMEOUT, f"{namespace}/{name} Ready as the chart's ServiceAccount")


def _reconcile_to_ready_as_the_service_account(
    cluster: ClusterAccess, helm: HelmOnCluster, workload_namespace: str, tmp_path: Path
) -> None:
    """Runs the operator as the chart's identity, reconciles one InferenceDeployment to Ready and
    deletes it again, and fails on any refusal in the operator's log."""
    operator = _chart_operator(cluster, helm, tmp_path / f"operator-{workload_namespace}.log")
    operator.start()
    try:
        cluster.apply(_inference_deployment("chat"), namespace=workload_namespace)
        _wait_ready(cluster, workload_namespace, "chat", [operator])
        assert cluster.get_or_none("service", "chat", namespace=workload_namespace) is not None
        # Deletion goes through Kopf's finalizer, also under the chart's RBAC.
        cluster.kubectl(
            "delete", "inferencedeployment", "chat", "--timeout=60s", namespace=workload_namespace
        )
    finally:
        operator.stop()
    assert_no_refusals(operator)


def _assert_notes_example_is_accepted(cluster: ClusterAccess, notes: str) -> None:
    """The InferenceDeployment NOTES.txt tells users to apply passes the CRD's validation."""
    example = textwrap.dedent(notes.split("cat <<YAML | kubectl apply -f -\n", 1)[1].split("YAML\n", 1)[0])
    assert yaml.safe_load(example)["kind"] == "InferenceDeployment"
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=example)


@pytest.fixture
def helm(chart: Chart, chart_cluster: ClusterAccess) -> Iterator[HelmOnCluster]:
    """Helm on the chart's cluster, from a clean slate: no release, no berth CRD (a kept one would be
    adopted with its keep annotation intact: Helm never removes from a live object what it did not
    put there in this release), and an operator namespace that enforces the "restricted" Pod
    Security Standard."""
    helm = HelmOnCluster(chart, chart_cluster)
    chart_cluster.kubectl("delete", CRD, "--ignore-not-found", "--wait=true")
    chart_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": OPERATOR_NAMESPACE,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    yield helm
    if RELEASE in helm("list", "--namespace", OPERATOR_NAMESPACE, "--short"):
        helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout=120s")


def _assert_uninstall_removes_all_but_kept_crds(
    cluster: ClusterAccess, helm: HelmOnCluster, manifest: list[dict[str, Any]], crds_kept: bool
) -> None:
    helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout=120s")
    for obj in manifest:
        kept = crds_kept and obj["kind"] == "CustomResourceDefinition"
        if kept:
            assert _exists(cluster, obj), f"{_reference(obj)} was deleted although crds.keep=true"
        else:
            wait_for(lambda obj=obj: not _exists(cluster, obj), 60, f"{_reference(obj)} to be deleted")


def test_install_reconcile_as_the_service_account_and_uninstall_keeping_crds(
    helm: HelmOnCluster, chart_cluster: ClusterAccess, tmp_path: Path
) -> None:
    chart_cluster.kubectl("create", "namespace", "ml")

    notes = helm.install({})

    assert f"kubectl -n {OPERATOR_NAMESPACE} rollout status deployment/berth" in notes
    _assert_notes_example_is_accepted(chart_cluster, notes)
    manifest = helm.manifest()
    assert {obj["kind"] for obj in manifest} >= {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    }
    missing = [_reference(obj) for obj in manifest if not _exists(chart_cluster, obj)]
    assert missing == []
    # The operator pod is admitted under the restricted Pod Security Standard and comes up.
    chart_cluster.kubectl(
        "rollout", "status", "deployment/berth", "--timeout=120s", namespace=OPERATOR_NAMESPACE
    )

    _reconcile_to_ready_as_the_service_account(chart_cluster, helm, "ml", tmp_path)

    _assert_uninstall_removes_all_but_kept_crds(chart_cluster, helm, manifest, crds_kept=True)


def test_namespaced_install_with_peering_reconciles_with_roles_and_uninstall_deletes_unkept_crds(
    helm: HelmOnCluster, chart_cluster: ClusterAccess, tmp_path: Path
) -> None:
    chart_cluster.kubectl("create", "namespace", "team-a")

    # Peering on: Kopf's peering CRDs come from the chart's crds/ folder, the KopfPeering from its
    # templates, in one install; the operator then keeps alive in it under the Role's rules.
    helm.install({"watchNamespaces": ["team-a"], "crds": {"keep": False}, "peering": {"enabled": True}})
    manifest = helm.manifest()
    assert {(obj["kind"], obj["metadata"].get("namespace")) for obj in manifest} >= {
        ("Role", "team-a"),
        ("RoleBinding", "team-a"),
        ("KopfPeering", "team-a"),
    }
    assert all(_exists(chart_cluster, obj) for obj in manifest)
    crd = chart_cluster.get("crd", "inferencedeployments.berth.dev")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})

    _reconcile_to_ready_as_the_service_account(chart_cluster, helm, "team-a", tmp_path)
    peering = chart_cluster.get("kopfpeering", "berth", namespace="team-a")
    assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE

    _assert_uninstall_removes_all_but_kept_crds(chart_cluster, helm, manifest, crds_kept=False)
    with pytest.raises(KubectlError):
        chart_cluster.get("inferencedeployments", namespace="team-a")


def test_two_peered_replicas_one_works_and_the_other_takes_over(
    helm: HelmOnCluster, chart_cluster: ClusterAccess, tmp_path: Path
) -> None:
    chart_cluster.kubectl("create", "namespace", "ha")
    helm.install({"replicaCount": 2, "peering": {"enabled": True}})
    assert chart_cluster.get_or_none("clusterkopfpeering", "berth") is not None
    # A new CRD's objects are served only once the API server's watch cache for them is filled
    # (429 "storage is (re)initializing" until then); kubectl waits that out. An operator whose list
    # is retried past its pause would still be handed, and handle, what that late list returns.
    wait_for(lambda: _served(chart_cluster), 60, "the InferenceDeployment kind served (in discovery)")
    replicas = [_chart_operator(chart_cluster, helm, tmp_path / f"replica-{index}.log") for index in (0, 1)]
    first, second = replicas
    try:
        with logs_shown_on_failure(replicas):
            # One replica alone works. Only once it has said so does the second start: a replica that
            # has not yet read the peering logs no decision either, and one that reads it late may
            # still see itself alone and take work in the moment before it pauses.
            first.start()
            wait_for(first.is_working, 60, f"{first.pod_name}, alone, to work")
            second.start()
            # Each replica draws its own priority and announces it in the peering object; the highest
            # works, the other pauses: the first one in favour of the newcomer, or the newcomer, which
            # finds the first one already there, from its start.
            priorities = wait_for(
                lambda: _peer_priorities(chart_cluster, [replica.pod_name for replica in replicas]),
                60,
                "both replicas in the ClusterKopfPeering",
            )
            active, standby = sorted(replicas, key=lambda replica: priorities[replica.pod_name], reverse=True)
            wait_for(active.is_working, 60, f"{active.pod_name}, the higher priority, to work")
            wait_for(lambda: not standby.is_working(), 60, f"{standby.pod_name}, the lower one, to pause")
            chart_cluster.apply(_inference_deployment("first"), namespace="ha")
            _wait_ready(chart_cluster, "ha", "first", replicas)
            # Only the active replica made requests in the workload namespace (its DEBUG log lists them).
            assert "/namespaces/ha/" in active.log()
            assert "/namespaces/ha/" not in standby.log(), "the standby replica reconciled too"

            active.stop()  # a graceful exit leaves the peering: the standby resumes at once
            wait_for(standby.is_working, 60, "the standby to resume")
            chart_cluster.apply(_inference_deployment("second"), namespace="ha")
            _wait_ready(chart_cluster, "ha", "second", [standby])
            chart_cluster.kubectl("delete", "inferencedeployment", "--all", "--timeout=60s", namespace="ha")
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        assert_no_refusals(replica)
