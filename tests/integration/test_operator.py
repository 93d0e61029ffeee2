"""berth's operator end to end on a real control plane with simulated GPU nodes.

Why: these are the promises a platform team relies on — an InferenceDeployment becomes Ready pods
on the GPU product it names, problems surface in its status with the real reason, a model change
rolls without an outage, deletion cleans up, a crashed operator resumes without duplicating
anything, and ``kubectl scale`` works. Each test drives the cluster as a user would (kubectl) and
waits, within a bound, for the controllers and the operator to converge.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.simulation import GPU_PRODUCT_LABEL, POD_FAIL_ANNOTATION, POD_FAIL_MESSAGE_ANNOTATION
from tests.integration.conftest import A100, H100
from tests.integration.endpoint_watch import ReadyEndpointWatch
from tests.integration.idep_reads import INSTANCE_LABEL, idep_status, runtime_pods, wait_idep_ready
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration

REVISION_LABEL = "berth.dev/revision"
TIMEOUT = 90.0
REPAIR_SECONDS = 30.0


def _idep(
    name: str, product: str = H100, gpus: int = 1, replicas: int = 1, revision: str = "main"
) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "revision": revision},
            "resources": {"gpu": {"count": gpus, "product": product}},
            "runtime": {"tensorParallelSize": gpus},  # one GPU per rank
            "replicas": replicas,
        },
    }


def _nodes_with_product(cluster: ClusterAccess, product: str) -> set[str]:
    return {
        node["metadata"]["name"]
        for node in cluster.get("nodes")
        if node["metadata"]["labels"].get(GPU_PRODUCT_LABEL) == product
    }


def test_a_deployment_becomes_ready_on_the_gpu_product_it_asks_for(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("chat", product=A100, gpus=2, replicas=2), namespace=namespace)

    status = wait_idep_ready(crds, namespace, "chat", replicas=2)

    assert status["ready"] == "2/2"
    assert status["endpoint"].startswith(f"http://chat.{namespace}.svc")
    assert (condition({"status": status}, "Ready") or {}).get("status") == "True"
    assert (condition({"status": status}, "Degraded") or {}).get("status") == "False"
    pods = runtime_pods(crds, namespace, "chat")
    assert len(pods) == 2
    assert {pod["spec"]["nodeName"] for pod in pods} <= _nodes_with_product(crds, A100)
    idep_uid = crds.get("inferencedeployment", "chat", namespace=namespace)["metadata"]["uid"]
    deployment = crds.get("deployment", "chat", namespace=namespace)
    assert [owner["uid"] for owner in deployment["metadata"]["ownerReferences"]] == [idep_uid]

    # How long the replicas took to start, from the kubelet's timestamps: the simulated fetch ends as
    # it starts, the simulated load takes the bed's readiness delay (1 s).
    def cold_start_of_both() -> dict[str, Any] | None:
        measured = idep_status(crds, namespace, "chat").get("coldStart")
        return measured if measured and measured["pods"] == 2 else None

    cold_start = wait_for(cold_start_of_both, 30, "status.coldStart measured on both pods")
    assert cold_start["revision"] == status["revision"]["current"]
    assert cold_start["downloadSeconds"] == 0
    assert 0 <= cold_start["startupSeconds"] <= cold_start["totalSeconds"] <= cold_start["slowestSeconds"]


def test_more_gpus_than_any_node_has_leaves_it_pending_with_the_schedulers_reason(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("huge", gpus=16), namespace=namespace)

    def unschedulable() -> dict[str, Any] | None:
        found = condition({"status": idep_status(crds, namespace, "huge")}, "Ready")
        return found if found and found.get("reason") == "Unschedulable" else None

    ready = wait_for(unschedulable, TIMEOUT, "a Ready=False condition with reason Unschedulable")
    assert ready["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert idep_status(crds, namespace, "huge")["phase"] == "Pending"
    assert all(pod["status"]["phase"] == "Pending" for pod in runtime_pods(crds, namespace, "huge"))


def test_a_crashing_pod_turns_the_deployment_degraded_with_the_reason(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("crashy"), namespace=namespace)
    wait_idep_ready(crds, namespace, "crashy", replicas=1)
    pod = runtime_pods(crds, namespace, "crashy")[0]["metadata"]["name"]

    crds.kubectl(
        "annotate",
        "pod",
        pod,
        f"{POD_FAIL_ANNOTATION}=true",
        f"{POD_FAIL_MESSAGE_ANNOTATION}=CUDA out of memory",
        namespace=namespace,
    )

    def degraded() -> dict[str, Any] | None:
        status = idep_status(crds, namespace, "crashy")
        return status if status.get("phase") == "Degraded" else None

    status = wait_for(degraded, TIMEOUT, "phase Degraded")
    found = condition({"status": status}, "Degraded") or {}
    assert found.get("status") == "True"
    assert found.get("reason") == "CrashLoopBackOff"
    assert pod in found.get("message", "")


def test_a_new_model_revision_rolls_out_without_the_service_losing_every_ready_endpoint(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("rolling", replicas=2, revision="v1"), namespace=namespace)
    before = wait_idep_ready(crds, namespace, "rolling", replicas=2)
    old_pods = {pod["metadata"]["name"] for pod in runtime_pods(crds, namespace, "rolling")}

    with ReadyEndpointWatch(crds.kubeconfig, namespace, "rolling") as watch:
        wait_for(lambda: watch.ready_count() == 2, 30, "the watch to see both ready endpoints")
        crds.kubectl(
            "patch",
            "inferencedeployment",
            "rolling",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"model": {"revision": "v2"}}}),
            namespace=namespace,
        )

        def rolled() -> dict[str, Any] | None:
            status = idep_status(crds, namespace, "rolling")
            revision = status.get("revision") or {}
            pods = runtime_pods(crds, namespace, "rolling")
            done = (
                revision.get("current") == revision.get("target") != before["revision"]["current"]
                and status.get("phase") == "Ready"
                and status.get("readyReplicas") == 2
                and len(pods) == 2
                and not {pod["metadata"]["name"] for pod in pods} & old_pods
            )
            return status if done else None

        status = wait_for(rolled, TIMEOUT, "every replica on the new revision and Ready")
        wait_for(lambda: watch.ready_count() == 2, 30, "the Service to list both new endpoints")

    new_revision = status["revision"]["current"]
    assert all(
        pod["metadata"]["labels"][REVISION_LABEL] == new_revision
        for pod in runtime_pods(crds, namespace, "rolling")
    )
    assert watch.changes_seen >= 2, "the watch must have seen the rollout change the endpoints"
    assert watch.lowest_ready_count >= 1, (
        f"ready endpoints fell to {watch.lowest_ready_count} during the rollout"
    )


def test_deleting_the_resource_garbage_collects_every_child(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("doomed", replicas=2), namespace=namespace)
    wait_idep_ready(crds, namespace, "doomed", replicas=2)
    child_kinds = ("deployments", "replicasets", "pods", "services", "configmaps", "poddisruptionbudgets")
    selector = {INSTANCE_LABEL: "doomed"}
    assert all(
        crds.get(kind, namespace=namespace, **selector) for kind in ("deployments", "pods", "services")
    )

    crds.kubectl("delete", "inferencedeployment", "doomed", "--timeout=60s", namespace=namespace)

    def all_gone() -> bool:
        return not any(crds.get(kind, namespace=namespace, **selector) for kind in child_kinds)

    wait_for(all_gone, TIMEOUT, "the garbage collector to remove every child")


def test_an_operator_killed_mid_reconcile_resumes_without_duplicate_children(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    names = ["resume-a", "resume-b", "resume-c"]
    for name in names:
        crds.apply(_idep(name, replicas=2), namespace=namespace)
    wait_for(
        lambda: crds.get("deployments", namespace=namespace), 30, "the operator to create a first Deployment"
    )
    operator.kill()
    killed_while_unfinished = any(
        idep_status(crds, namespace, name).get("phase") != "Ready" for name in names
    )

    operator.start()

    for name in names:
        wait_idep_ready(crds, namespace, name, replicas=2)
    assert killed_while_unfinished, "the kill must land before every resource was reconciled"
    for name in names:
        selector = {INSTANCE_LABEL: name}
        assert len(crds.get("deployments", namespace=namespace, **selector)) == 1
        assert len(crds.get("services", namespace=namespace, **selector)) == 1
        assert len(crds.get("replicasets", namespace=namespace, **selector)) == 1
        assert len(runtime_pods(crds, namespace, name)) == 2


def test_kubectl_scale_works_through_the_scale_subresource(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("scalable", replicas=1), namespace=namespace)
    wait_idep_ready(crds, namespace, "scalable", replicas=1)

    crds.kubectl("scale", "inferencedeployment/scalable", "--replicas=3", namespace=namespace)

    wait_idep_ready(crds, namespace, "scalable", replicas=3)
    assert crds.get("inferencedeployment", "scalable", namespace=namespace)["spec"]["replicas"] == 3
    assert crds.get("deployment", "scalable", namespace=namespace)["spec"]["replicas"] == 3
    scale = json.loads(
        crds.kubectl(
            "get", "inferencedeployment", "scalable", "--subresource=scale", "-o", "json", namespace=namespace
        )
    )
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 3
    assert f"{INSTANCE_LABEL}=scalable" in scale["status"]["selector"]


def test_children_deleted_or_edited_behind_the_operators_back_are_repaired_within_seconds(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(_idep("guarded"), namespace=namespace)
    wait_idep_ready(crds, namespace, "guarded", replicas=1)
    service_uid = crds.get("service", "guarded", namespace=namespace)["metadata"]["uid"]
    runtime_config = crds.get("configmap", "guarded-runtime", namespace=namespace)["data"]

    # Far sooner than the periodic resync (RESYNC_SECONDS, 5 minutes): the operator watches its children.
    crds.kubectl("delete", "service", "guarded", namespace=namespace)
    wait_for(
        lambda: (
            (crds.get_or_none("service", "guarded", namespace=namespace) or {}).get("metadata", {}).get("uid")
            not in (None, service_uid)
        ),
        REPAIR_SECONDS,
        "the deleted Service to be re-created",
    )

    crds.kubectl(
        "patch",
        "configmap",
        "guarded-runtime",
        "--type=merge",
        "-p",
        json.dumps({"data": {"runtime.json": "{}"}}),
        namespace=namespace,
    )
    crds.kubectl(
        "patch",
        "pdb",
        "guarded",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"maxUnavailable": 0}}),
        namespace=namespace,
    )
    wait_for(
        lambda: crds.get("configmap", "guarded-runtime", namespace=namespace)["data"] == runtime_config,
        REPAIR_SECONDS,
        "the edited ConfigMap to be restored",
    )
    wait_for(
        lambda: crds.get("pdb", "guarded", namespace=namespace)["spec"].get("maxUnavailable") == 1,
        REPAIR_SECONDS,
        "the edited PodDisruptionBudget to be restored",
    )

    # A label someone adds is theirs: it stays, and berth does not fight over it.
    crds.kubectl("label", "service", "guarded", "team=search", namespace=namespace)
    assert crds.get("service", "guarded", namespace=namespace)["metadata"]["labels"]["team"] == "search"
