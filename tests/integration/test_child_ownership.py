"""berth touches only what it created for a resource, on a real control plane: an object already
holding a child's name -- the API server's own `kubernetes` Service, a user's ConfigMap -- is reported
in status and left byte-identical, and survives the resource's deletion. And whatever the rollout
settings, a swap never takes the last ready replica down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import H100
from tests.integration.endpoint_watch import ReadyEndpointWatch
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 60.0


def _idep(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": name, "source": "hf://org/model"}, **spec},
    }


def _conflict(cluster: ClusterAccess, namespace: str, name: str) -> dict[str, Any]:
    def reported() -> dict[str, Any] | None:
        found = condition(cluster.get_or_none("inferencedeployment", name, namespace=namespace), "Accepted")
        return found if found and found["reason"] == "ChildConflict" else None

    return wait_for(reported, TIMEOUT, f"{name}: Accepted=False with reason ChildConflict")


def _raw(cluster: ClusterAccess, kind: str, name: str, namespace: str) -> str:
    return cluster.kubectl("get", kind, name, "-o", "json", namespace=namespace)


@pytest.fixture
def default_namespace_operator(crds: ClusterAccess, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(crds.kubeconfig, "default", tmp_path / "operator-default.log")
    process.start()
    yield process
    try:
        crds.kubectl(
            "delete",
            "inferencedeployment",
            "kubernetes",
            "--ignore-not-found",
            "--timeout=60s",
            namespace="default",
        )
    finally:
        process.stop()


def test_a_resource_named_kubernetes_never_touches_the_api_servers_service(
    crds: ClusterAccess, default_namespace_operator: OperatorProcess
) -> None:
    service_before = _raw(crds, "service", "kubernetes", "default")
    slices_before = crds.get(
        "endpointslices", namespace="default", **{"kubernetes.io/service-name": "kubernetes"}
    )

    crds.apply(_idep("kubernetes"), namespace="default")
    accepted = _conflict(crds, "default", "kubernetes")

    assert accepted["status"] == "False"
    assert "Service default/kubernetes already exists" in accepted["message"]
    assert crds.get_or_none("deployment", "kubernetes", namespace="default") is None
    assert crds.get_or_none("configmap", "kubernetes-runtime", namespace="default") is None
    events = [
        e for e in crds.get("events", namespace="default") if e["involvedObject"]["name"] == "kubernetes"
    ]
    assert any(e["type"] == "Warning" and e["reason"] == "ChildConflict" for e in events)

    crds.kubectl("delete", "inferencedeployment", "kubernetes", "--timeout=60s", namespace="default")
    assert _raw(crds, "service", "kubernetes", "default") == service_before
    slices_after = crds.get(
        "endpointslices", namespace="default", **{"kubernetes.io/service-name": "kubernetes"}
    )
    assert slices_after == slices_before
    assert "Traceback" not in default_namespace_operator.log()


def test_a_users_objects_with_a_childs_name_are_reported_kept_and_outlive_the_resource(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    # Same labels as berth's children: labels are not ownership.
    labels = {"app.kubernetes.io/managed-by": "berth", "app.kubernetes.io/instance": "chat"}
    crds.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chat-runtime", "labels": labels},
            "data": {"mine": "1"},
        },
        namespace=namespace,
    )
    crds.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "search"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "search"}}},
        },
        namespace=namespace,
    )
    config_map_before = _raw(crds, "configmap", "chat-runtime", namespace)
    budget_before = _raw(crds, "pdb", "search", namespace)

    crds.apply(_idep("chat"), namespace=namespace)
    crds.apply(_idep("search"), namespace=namespace)

    assert (
        "ConfigMap " + namespace + "/chat-runtime already exists"
        in _conflict(crds, namespace, "chat")["message"]
    )
    assert (
        "PodDisruptionBudget " + namespace + "/search already exists"
        in _conflict(crds, namespace, "search")["message"]
    )
    for name in ("chat", "search"):  # checked before anything is written
        assert crds.get_or_none("deployment", name, namespace=namespace) is None
        assert crds.get("inferencedeployment", name, namespace=namespace)["status"]["phase"] == "Failed"

    crds.kubectl("delete", "inferencedeployments", "--all", "--timeout=60s", namespace=namespace)
    assert _raw(crds, "configmap", "chat-runtime", namespace) == config_map_before
    assert _raw(crds, "pdb", "search", namespace) == budget_before


def test_once_the_object_in_the_way_goes_the_resource_proceeds(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late-runtime"}, "data": {}},
        namespace=namespace,
    )
    crds.apply(_idep("late", resources={"gpu": {"count": 1, "product": H100}}), namespace=namespace)
    _conflict(crds, namespace, "late")

    crds.kubectl("delete", "configmap", "late-runtime", namespace=namespace)

    def accepted() -> dict[str, Any] | None:
        found = condition(crds.get("inferencedeployment", "late", namespace=namespace), "Accepted")
        return found if found and found["status"] == "True" else None

    wait_for(accepted, TIMEOUT, "late accepted after the ConfigMap in the way was deleted (first retry 15 s)")
    owners = crds.get("configmap", "late-runtime", namespace=namespace)["metadata"]["ownerReferences"]
    assert [owner["name"] for owner in owners] == ["late"]


def test_max_unavailable_never_takes_the_last_ready_replica_down(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    spec = {
        "replicas": 3,
        "resources": {"gpu": {"count": 1, "product": H100}},
        "rollout": {"maxSurge": 0, "maxUnavailable": 3},
    }
    crds.apply(_idep("swap", **spec), namespace=namespace)

    def ready(count: int) -> Any:
        return lambda: (
            (crds.get("inferencedeployment", "swap", namespace=namespace).get("status") or {}).get(
                "readyReplicas"
            )
            == count
        )

    wait_for(ready(3), TIMEOUT, "3 ready replicas")
    strategy = crds.get("deployment", "swap", namespace=namespace)["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 2}

    with ReadyEndpointWatch(crds.kubeconfig, namespace, "swap") as watch:
        wait_for(lambda: watch.ready_count() == 3, 30, "the watch to see three ready endpoints")
        # A revision that can never become ready: no node has 16 GPUs.
        unschedulable = {
            **spec,
            "resources": {"gpu": {"count": 16, "product": H100}},
            "runtime": {"tensorParallelSize": 16},
        }
        crds.apply(_idep("swap", **unschedulable), namespace=namespace)
        wait_for(ready(1), TIMEOUT, "the roll stuck with one old replica still serving")
        wait_for(lambda: watch.ready_count() == 1, 30, "the Service down to the one old replica")
    assert watch.lowest_ready_count == 1
    status = crds.get("inferencedeployment", "swap", namespace=namespace)["status"]
    assert status["ready"] == "1/3"
