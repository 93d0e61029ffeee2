"""Status tells the truth within seconds, with the cause, and in an Event: the audit's three cases on
a real control plane.

Why: an audit found status that lied or said nothing. (a) A lost node: status counted the
Deployment's readyReplicas and said 3/3 for most of a minute while the Service routed to 2. (b) Pods
the API server refuses to create (a missing ServiceAccount): "Pending, 0/1 ready" forever, the
ReplicaSet's FailedCreate never reaching status. (c) A volume the kubelet cannot mount: reported
only as a Warning Event on the pod, never in pod status. Each test makes the failure happen the way
a cluster would and bounds how long status may take to say so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.cluster.simulation import KWOK_NODE_ANNOTATION, POD_READY_DELAY_ANNOTATION, node_manifests
from tests.integration.conftest import TEST_SIMULATION
from tests.integration.idep_reads import idep_manifest, idep_status, runtime_pods, wait_idep_ready
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 90.0
# How long status may trail what the Service routes to, and a refused or unmountable pod.
CATCH_UP_SECONDS = 5.0
FAILED_CREATE_SECONDS = 20.0
FAILED_MOUNT_SECONDS = 10.0
# After status has caught up with the lost node, how long the test keeps comparing it with the slices.
AGREEMENT_WINDOW_SECONDS = 10.0


def _ready_endpoints(cluster: ClusterAccess, namespace: str, service: str) -> int:
    """Pods the Service routes to: ready, non-terminating endpoints of its slices, each pod once."""
    slices = cluster.get("endpointslices", namespace=namespace, **{"kubernetes.io/service-name": service})
    return len(
        {
            endpoint["targetRef"]["name"]
            for endpoint_slice in slices
            for endpoint in endpoint_slice.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready") is True
            and endpoint.get("conditions", {}).get("terminating") is not True
        }
    )


def _warnings_on(cluster: ClusterAccess, namespace: str, name: str) -> list[dict[str, Any]]:
    """Warning Events recorded on the InferenceDeployment `name`."""
    selector = f"involvedObject.kind=InferenceDeployment,involvedObject.name={name},type=Warning"
    output = cluster.kubectl(
        "get", "events", f"--field-selector={selector}", "-o", "json", namespace=namespace
    )
    return list(json.loads(output)["items"])


def _warning_with_reason(cluster: ClusterAccess, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        matches = [e for e in _warnings_on(cluster, namespace, name) if e.get("reason") == reason]
        return matches[0] if matches else None

    return wait_for(found, 10, f"a Warning Event {reason} on {name}")


def _nudge_endpoint_slice_controller(cluster: ClusterAccess, namespace: str, service: str) -> None:
    """Make the EndpointSlice controller re-evaluate the Service now.

    It re-evaluates a Service when the Service or one of its pods' endpoint fields changes. On a real
    cluster that happens soon after a node is lost (the controller has every pod of the cluster to
    follow); on this quiet one nothing would, so the test touches the Service, as a user could.
    """
    cluster.kubectl(
        "annotate",
        "--overwrite",
        "service",
        service,
        f"test.berth.dev/nudge={uuid.uuid4().hex}",
        namespace=namespace,
    )


@contextmanager
def _lost_node(cluster: ClusterAccess, node_name: str) -> Iterator[None]:
    """The simulated node `node_name` is deleted, as when its machine is gone; afterwards it is
    registered again from the test simulation (the same manifest the cluster started with), so the
    tests after this one find every GPU node."""
    owner = cluster.get("node", node_name)["metadata"]["annotations"][KWOK_NODE_ANNOTATION]
    (manifest,) = [
        node
        for node in node_manifests(replace(TEST_SIMULATION, node_owner=owner))
        if node["metadata"]["name"] == node_name
    ]
    cluster.kubectl("delete", "node", node_name)
    try:
        yield
    finally:
        cluster.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{node_name}", "--timeout=60s")


@dataclass(frozen=True)
class Sample:
    """One look at both sides, the slices read first."""

    seconds: float
    slice_ready: int
    status_ready: int | None
    status_ready_text: str | None


def test_a_lost_node_leaves_status_as_soon_as_the_service_stops_routing_to_it(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(idep_manifest("fleet", replicas=3), namespace=namespace)
    wait_idep_ready(crds, namespace, "fleet", replicas=3)
    wait_for(lambda: _ready_endpoints(crds, namespace, "fleet") == 3, 30, "3 ready endpoints")
    lost_pod = runtime_pods(crds, namespace, "fleet")[0]
    lost_pod_name = lost_pod["metadata"]["name"]

    with _lost_node(crds, lost_pod["spec"]["nodeName"]):
        _nudge_endpoint_slice_controller(crds, namespace, "fleet")
        started = time.monotonic()
        samples: list[Sample] = []
        dropped_at: float | None = None
        caught_up_at: float | None = None
        caught_up_status: dict[str, Any] = {}
        deployment_ready_at_catch_up = None
        while time.monotonic() - started < 60:
            slice_ready = _ready_endpoints(crds, namespace, "fleet")
            status = idep_status(crds, namespace, "fleet")
            sample = Sample(
                time.monotonic() - started, slice_ready, status.get("readyReplicas"), status.get("ready")
            )
            samples.append(sample)
            if dropped_at is None and slice_ready == 2:
                dropped_at = sample.seconds
            if dropped_at is not None and caught_up_at is None and sample.status_ready == 2:
                caught_up_at = sample.seconds
                caught_up_status = status
                deployment_ready_at_catch_up = crds.get("deployment", "fleet", namespace=namespace)["status"][
                    "readyReplicas"
                ]
            if caught_up_at is not None and sample.seconds - caught_up_at >= AGREEMENT_WINDOW_SECONDS:
                break
            time.sleep(0.2)

        assert dropped_at is not None, f"the EndpointSlice never dropped the lost pod: {samples}"
        assert caught_up_at is not None, f"status never said 2 ready: {samples}"
        assert caught_up_at - dropped_at <= CATCH_UP_SECONDS, samples
        assert caught_up_status["ready"] == "2/3"
        # The Deployment still counted the lost pod: the 2 came from what the Service routes to.
        assert deployment_ready_at_catch_up == 3
        after = [sample for sample in samples if sample.seconds >= caught_up_at]
        claims = [sample for sample in after if sample.slice_ready == 2 and (sample.status_ready or 0) > 2]
        assert not claims, f"status claimed more than the Service routes to: {claims}"
        ready = condition({"status": caught_up_status}, "Ready") or {}
        assert (ready.get("status"), ready.get("reason")) == ("False", "NotServing")
        assert lost_pod_name in ready.get("message", "")
        assert "2/3 replicas ready" in _warning_with_reason(crds, namespace, "fleet", "NotReady")["message"]

    # The node is back (or the pod garbage collector replaced the pod): status follows the Service.
    _nudge_endpoint_slice_controller(crds, namespace, "fleet")
    status = wait_idep_ready(crds, namespace, "fleet", replicas=3)
    assert status["ready"] == "3/3"


def test_pods_the_api_server_refuses_show_as_degraded_with_its_message(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(idep_manifest("orphan", runtime={"serviceAccountName": "does-not-exist"}), namespace=namespace)

    def failed_create() -> dict[str, Any] | None:
        status = idep_status(crds, namespace, "orphan")
        degraded = condition({"status": status}, "Degraded") or {}
        return status if degraded.get("reason") == "FailedCreate" else None

    status = wait_for(failed_create, FAILED_CREATE_SECONDS, "Degraded with reason FailedCreate")
    degraded = condition({"status": status}, "Degraded") or {}
    ready = condition({"status": status}, "Ready") or {}
    assert status["phase"] == "Degraded"
    assert degraded["status"] == "True"
    assert 'serviceaccount "does-not-exist" not found' in degraded["message"]
    assert (ready["status"], ready["reason"]) == ("False", "FailedCreate")
    assert ready["message"].startswith("0/1 replicas ready; ")
    assert "does-not-exist" in ready["message"]
    event = _warning_with_reason(crds, namespace, "orphan", "FailedCreate")
    assert 'serviceaccount "does-not-exist" not found' in event["message"]


def _hold_before_first_container(cluster: ClusterAccess, namespace: str, pod: dict[str, Any]) -> None:
    """Report the pod as a kubelet does while a volume cannot be mounted: no container started, each
    waiting (PodInitializing behind init containers), not Ready. KWOK would move a Pending pod on at
    once, so the phase stays Running, and a long readiness delay keeps KWOK from making it Ready."""
    name = pod["metadata"]["name"]
    cluster.kubectl("annotate", "pod", name, f"{POD_READY_DELAY_ANNOTATION}=1h", namespace=namespace)
    spec = pod["spec"]
    first_wait = "PodInitializing" if spec.get("initContainers") else "ContainerCreating"

    def waiting(container: dict[str, Any], reason: str) -> dict[str, Any]:
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": reason}},
        }

    not_ready = {"status": "False", "reason": "ContainersNotReady"}
    status = {
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"},
            {"type": "ContainersReady", **not_ready},
            {"type": "Ready", **not_ready},
        ],
        "initContainerStatuses": [
            waiting(container, "PodInitializing") for container in spec.get("initContainers", [])
        ],
        "containerStatuses": [waiting(container, first_wait) for container in spec["containers"]],
    }
    cluster.kubectl(
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
        namespace=namespace,
    )


def _kubelet_warning(pod: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    """A Warning Event about `pod` as the kubelet of its node records it."""
    metadata = pod["metadata"]
    node = pod["spec"]["nodeName"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}",
            "namespace": metadata["namespace"],
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
        },
        "type": "Warning",
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def test_a_volume_the_kubelet_cannot_mount_shows_as_degraded_with_the_kubelets_message(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    crds.kubectl(
        "create", "secret", "generic", "chat-key", "--from-literal=token=s3cret", namespace=namespace
    )
    api_key = {"apiKeySecretRef": {"name": "chat-key", "key": "token"}}
    crds.apply(idep_manifest("mounty", serving=api_key), namespace=namespace)
    wait_idep_ready(crds, namespace, "mounty", replicas=1)
    # The Secret goes after the spec was accepted; the next pod to start cannot mount it.
    crds.kubectl("delete", "secret", "chat-key", namespace=namespace)
    (pod,) = runtime_pods(crds, namespace, "mounty")
    _hold_before_first_container(crds, namespace, pod)
    wait_for(
        lambda: idep_status(crds, namespace, "mounty").get("ready") == "0/1",
        CATCH_UP_SECONDS,
        "status to see the pod waiting",
    )
    assert (condition({"status": idep_status(crds, namespace, "mounty")}, "Degraded") or {}).get(
        "status"
    ) == "False"

    kubelet_message = 'MountVolume.SetUp failed for volume "api-key" : secret "chat-key" not found'
    crds.kubectl(
        "create",
        "-f",
        "-",
        stdin=json.dumps(_kubelet_warning(pod, "FailedMount", kubelet_message)),
        namespace=namespace,
    )

    def failed_mount() -> dict[str, Any] | None:
        found = condition({"status": idep_status(crds, namespace, "mounty")}, "Degraded") or {}
        return found if found.get("reason") == "FailedMount" else None

    degraded = wait_for(failed_mount, FAILED_MOUNT_SECONDS, "Degraded with reason FailedMount")
    assert degraded["status"] == "True"
    assert degraded["message"] == f"pod {pod['metadata']['name']}: {kubelet_message}"
    assert idep_status(crds, namespace, "mounty")["phase"] == "Degraded"
    assert kubelet_message in _warning_with_reason(crds, namespace, "mounty", "FailedMount")["message"]
