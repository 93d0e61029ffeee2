"""The Node objects of a local node agent: registration, and the heartbeat that keeps them Ready.

Why: the scheduler places pods only on Ready nodes with room, and the node-lifecycle controller
taints and evicts a node whose kubelet stops reporting. So the agent registers each node as a
kubelet does (capacity and allocatable of this host, conditions, InternalIP, nodeInfo) and renews
its Lease in ``kube-node-lease`` every 10 s, re-posting the conditions once a minute. The nodes are
not annotated ``kwok.x-k8s.io/node``, so KWOK leaves them alone. They are labelled and tainted
``node.berth.dev/runs-pods=true``: only pods that select and tolerate it land here, so a test's
plain pod with an image and no command never ends up on a node that would really try to run it.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.cluster.local_node.kube import Kube, KubeError
from tests.cluster.local_node.records import micro_timestamp, timestamp

RUNS_PODS_LABEL = "node.berth.dev/runs-pods"
RUNS_PODS_TAINT = {"key": RUNS_PODS_LABEL, "value": "true", "effect": "NoSchedule"}
POD_LOGS_ANNOTATION = "node.berth.dev/pod-logs"
POD_NETWORK_ANNOTATION = "node.berth.dev/pod-network"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
KUBELET_VERSION = "v1.35.4-berth-local"
_MI = 1024 * 1024

log = logging.getLogger(__name__)


def host_capacity(state_dir: Path, cpu: str | None = None, memory: str | None = None) -> dict[str, str]:
    """This host's CPUs, memory and disk (the state folder's), or the overrides given."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu": cpu or str(os.cpu_count() or 1),
        "memory": memory or f"{mem_kib}Ki",
        "ephemeral-storage": f"{shutil.disk_usage(state_dir).total // 1024}Ki",
        "pods": "110",
    }


def allocatable(capacity: dict[str, str]) -> dict[str, str]:
    """Capacity less the kubelet's default hard-eviction reserves (memory.available 100Mi,
    nodefs.available 10%)."""
    result = dict(capacity)
    if capacity["memory"].endswith("Ki"):
        result["memory"] = f"{max(0, int(capacity['memory'][:-2]) - 100 * 1024)}Ki"
    storage_kib = int(capacity["ephemeral-storage"][:-2])
    result["ephemeral-storage"] = f"{storage_kib * 9 // 10}Ki"
    return result


def _conditions(now: str, since: str) -> list[dict[str, str]]:
    rows = (
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    )
    return [
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }
        for kind, status, reason, message in rows
    ]


def node_manifest(
    name: str, address: str, capacity: dict[str, str], pod_logs: Path, pod_network: str, now: str
) -> dict[str, Any]:
    machine = platform.machine()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
                "type": "local",
                RUNS_PODS_LABEL: "true",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                POD_LOGS_ANNOTATION: str(pod_logs),
                POD_NETWORK_ANNOTATION: pod_network,
            },
        },
        "spec": {"taints": [dict(RUNS_PODS_TAINT)]},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable(capacity),
            "conditions": _conditions(now, now),
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
                "operatingSystem": "linux",
                "osImage": platform.platform(),
                "kernelVersion": platform.release(),
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "berth-local://1",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


class NodeHeartbeat:
    """Registers the nodes, then renews their Leases and conditions until stopped."""

    def __init__(self, kube: Kube, manifests: Sequence[dict[str, Any]], renew_seconds: float = 10.0,
                 status_seconds: float = 60.0) -> None:  # fmt: skip
        self._kube = kube
        self._manifests = list(manifests)
        self._renew_seconds = renew_seconds
        self._status_seconds = status_seconds
        self._since = timestamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)

    def register(self) -> None:
        for manifest in self._manifests:
            name = manifest["metadata"]["name"]
            try:
                created = self._kube.request("POST", "/api/v1/nodes", body=manifest)
            except KubeError as error:
                if error.status != 409:
                    raise
                patch = {key: manifest[key] for key in ("metadata", "spec")}
                created = self._kube.merge_patch(f"/api/v1/nodes/{name}", patch)
                self._kube.merge_patch(f"/api/v1/nodes/{name}/status", {"status": manifest["status"]})
            self._renew_lease(name, created["metadata"]["uid"])

    def _renew_lease(self, name: str, node_uid: str | None = None) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        renew = {"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                          "renewTime": micro_timestamp()}}  # fmt: skip
        try:
            self._kube.merge_patch(f"{path}/{name}", renew)
        except KubeError as error:
            if error.status != 404 or node_uid is None:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
            lease = {
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                **renew,
            }
            self._kube.request("POST", path, body=lease)

    def _post_conditions(self, name: str) -> None:
        body = {"status": {"conditions": _conditions(timestamp(), self._since)}}
        self._kube.merge_patch(f"/api/v1/nodes/{name}/status", body)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        since_status = 0.0
        while not self._stop.wait(self._renew_seconds):
            since_status += self._renew_seconds
            for manifest in self._manifests:
                name = manifest["metadata"]["name"]
                try:
                    self._renew_lease(name)
                    if since_status >= self._status_seconds:
                        self._post_conditions(name)
                except KubeError as error:  # a deleted node is not re-registered: `down` deletes it
                    log.warning("node %s: heartbeat failed: %s", name, error)
            if since_status >= self._status_seconds:
                since_status = 0.0
