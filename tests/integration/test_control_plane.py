"""The local control plane behaves like a real GPU cluster (no operator involved).

Why: every operator test below leans on these behaviours; when one breaks, this file says whether
the test bed or the operator is at fault.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.simulation import GPU_PRODUCT_LABEL, GPU_RESOURCE, POD_FAIL_ANNOTATION
from tests.integration.conftest import A100, H100, TEST_SIMULATION
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration


def _gpu_deployment(name: str, product: str, gpus: int, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {GPU_PRODUCT_LABEL: product},
                    "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "runtime",
                            "image": "registry.invalid/berth-runtime:test",
                            "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def _ready_pods(cluster: ClusterAccess, namespace: str, app: str, count: int) -> list[dict[str, Any]] | None:
    pods = cluster.get("pods", namespace=namespace, app=app)
    ready = [pod for pod in pods if (condition(pod, "Ready") or {}).get("status") == "True"]
    return ready if len(ready) == count else None


def test_simulated_nodes_advertise_gpus_labels_and_taints(cluster: ClusterAccess) -> None:
    if not cluster.local:
        pytest.skip("the node layout is the local control plane's")
    nodes = {node["metadata"]["name"]: node for node in cluster.get("nodes")}
    gpu_nodes = [node for node in nodes.values() if GPU_PRODUCT_LABEL in node["metadata"]["labels"]]
    expected_gpu_nodes = sum(pool.nodes for pool in TEST_SIMULATION.gpu_pools)
    assert len(gpu_nodes) == expected_gpu_nodes
    assert len(nodes) == expected_gpu_nodes + TEST_SIMULATION.cpu_nodes
    for node in nodes.values():
        assert (condition(node, "Ready") or {}).get("status") == "True", node["metadata"]["name"]
    for node in gpu_nodes:
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert node["metadata"]["labels"]["nvidia.com/gpu.memory"].isdigit()
        assert {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    products = {node["metadata"]["labels"][GPU_PRODUCT_LABEL] for node in gpu_nodes}
    assert products == {H100, A100}


def test_scheduler_places_gpu_pods_only_on_the_requested_product(
    cluster: ClusterAccess, namespace: str
) -> None:
    cluster.apply(_gpu_deployment("a100-job", A100, gpus=4, replicas=3), namespace=namespace)
    pods = wait_for(lambda: _ready_pods(cluster, namespace, "a100-job", 3), 90, "3 Ready pods")
    a100_nodes = {
        node["metadata"]["name"]
        for node in cluster.get("nodes")
        if node["metadata"]["labels"].get(GPU_PRODUCT_LABEL) == A100
    }
    assert {pod["spec"]["nodeName"] for pod in pods} <= a100_nodes
    assert all(pod["status"].get("podIP") for pod in pods)
    deployment = wait_for(
        lambda: (
            (d := cluster.get("deployment", "a100-job", namespace=namespace))["status"].get("readyReplicas")
            == 3
            and d
        ),
        60,
        "the Deployment to count 3 ready replicas",
    )
    assert deployment["status"]["availableReplicas"] == 3


def test_a_pod_needing_more_gpus_than_any_node_has_stays_pending_with_the_schedulers_reason(
    cluster: ClusterAccess, namespace: str
) -> None:
    cluster.apply(_gpu_deployment("too-big", H100, gpus=9, replicas=1), namespace=namespace)

    def unschedulable() -> dict[str, Any] | None:
        pods = cluster.get("pods", namespace=namespace, app="too-big")
        scheduled = condition(pods[0], "PodScheduled") if pods else None
        return scheduled if scheduled and scheduled.get("reason") == "Unschedulable" else None

    scheduled = wait_for(unschedulable, 60, "the scheduler to mark the pod Unschedulable")
    assert scheduled["status"] == "False"
    assert f"Insufficient {GPU_RESOURCE}" in scheduled["message"]
    assert cluster.get("pods", namespace=namespace, app="too-big")[0]["status"]["phase"] == "Pending"


def test_deleting_a_deployment_garbage_collects_its_replicasets_and_pods(
    cluster: ClusterAccess, namespace: str
) -> None:
    cluster.apply(_gpu_deployment("collected", H100, gpus=1, replicas=2), namespace=namespace)
    wait_for(lambda: _ready_pods(cluster, namespace, "collected", 2), 90, "2 Ready pods")
    assert cluster.get("replicasets", namespace=namespace, app="collected")

    cluster.kubectl("delete", "deployment", "collected", "--cascade=background", namespace=namespace)

    wait_for(
        lambda: (
            not cluster.get("replicasets", namespace=namespace, app="collected")
            and not cluster.get("pods", namespace=namespace, app="collected")
        ),
        90,
        "the garbage collector to remove the ReplicaSet and its pods",
    )


def test_a_pod_annotated_to_fail_crash_loops_and_leaves_the_service_endpoints(
    cluster: ClusterAccess, namespace: str
) -> None:
    cluster.apply(_gpu_deployment("crashy", H100, gpus=1, replicas=1), namespace=namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "crashy"},
            "spec": {"selector": {"app": "crashy"}, "ports": [{"port": 8000}]},
        },
        namespace=namespace,
    )
    pod = wait_for(lambda: _ready_pods(cluster, namespace, "crashy", 1), 90, "a Ready pod")[0]

    def ready_endpoints() -> int:
        slices = cluster.get(
            "endpointslices", namespace=namespace, **{"kubernetes.io/service-name": "crashy"}
        )
        return sum(1 for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready"))

    wait_for(lambda: ready_endpoints() == 1, 60, "one ready endpoint")

    name = pod["metadata"]["name"]
    cluster.kubectl("annotate", "pod", name, f"{POD_FAIL_ANNOTATION}=true", namespace=namespace)

    def crash_looping() -> dict[str, Any] | None:
        status = cluster.get("pod", name, namespace=namespace)["status"]
        waiting = status["containerStatuses"][0]["state"].get("waiting") or {}
        return status if waiting.get("reason") == "CrashLoopBackOff" else None

    status = wait_for(crash_looping, 60, "the pod to crash-loop")
    container = status["containerStatuses"][0]
    assert container["ready"] is False
    assert container["lastState"]["terminated"]["exitCode"] == 1
    wait_for(lambda: ready_endpoints() == 0, 60, "the crashed pod to leave the ready endpoints")
