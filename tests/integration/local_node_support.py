"""What the local-node integration tests share: the attached node, pods pinned to it, and a watch
that records every Ready value a pod had (test_local_node.py)."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch  # type: ignore[import-untyped]

from tests.cluster import launcher
from tests.cluster.local_node.node import RUNS_PODS_LABEL
from tests.integration.support import ClusterAccess, condition


@dataclass(frozen=True)
class LocalNode:
    name: str
    cluster: launcher.RunningCluster
    routed: bool
    """Pods get addresses EndpointSlices accept (the agent could add its local route)."""

    @property
    def pods_root(self) -> Path:
        return self.cluster.local_node_dir / "pods"


def pinned(node: LocalNode, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeSelector": {"kubernetes.io/hostname": node.name, RUNS_PODS_LABEL: "true"},
        "tolerations": [{"key": RUNS_PODS_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        **spec,
    }


def deployment(node: LocalNode, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pinned(node, spec)},
        },
    }


def only_pod(cluster: ClusterAccess, namespace: str, app: str) -> dict[str, Any] | None:
    pods = [
        pod
        for pod in cluster.get("pods", namespace=namespace, app=app)
        if not pod["metadata"].get("deletionTimestamp")
    ]
    return pods[0] if len(pods) == 1 else None


def ready(pod: dict[str, Any] | None) -> bool:
    found = condition(pod, "Ready")
    return bool(found and found["status"] == "True")


def get(url: str) -> str | None:
    """The body at ``url``; None while nothing answers there (so wait_for retries)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


@dataclass
class ReadinessRecord:
    """Every Ready value the API server held for the pods of one app, from a watch (polling would
    miss a pod that is Ready for a moment before its probe could pass)."""

    kubeconfig: Path
    namespace: str
    app: str
    seen: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ReadinessRecord:
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))
        started = threading.Event()

        def run() -> None:
            version = api.list_namespaced_pod(self.namespace).metadata.resource_version
            started.set()
            while not self._stop.is_set():
                for event in watch.Watch().stream(
                    api.list_namespaced_pod, self.namespace, label_selector=f"app={self.app}",
                    resource_version=version, timeout_seconds=1,
                ):  # fmt: skip
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
                    self.seen.append((time.monotonic(), ready))

        threading.Thread(target=run, daemon=True).start()
        assert started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def ready_before(self, moment: float) -> bool:
        return any(ready for at, ready in self.seen if at < moment)
