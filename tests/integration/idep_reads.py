"""An InferenceDeployment as the operator tests write it, and the reads of it and its runtime pods
that they share."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import H100
from tests.integration.support import ClusterAccess, wait_for

INSTANCE_LABEL = "app.kubernetes.io/instance"
READY_TIMEOUT_SECONDS = 90.0


def idep_manifest(name: str, replicas: int = 1, **sections: dict[str, Any]) -> dict[str, Any]:
    """InferenceDeployment `name` serving a small model on `replicas` H100 replicas of one GPU each;
    `sections` are further spec sections (`serving=`, `runtime=`, ...)."""
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": name, "source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "revision": "main"},
            "resources": {"gpu": {"count": 1, "product": H100}},
            "replicas": replicas,
            **sections,
        },
    }


def idep_status(cluster: ClusterAccess, namespace: str, name: str) -> dict[str, Any]:
    """The resource's status (empty before the operator's first write)."""
    return dict(cluster.get("inferencedeployment", name, namespace=namespace).get("status") or {})


def wait_idep_ready(cluster: ClusterAccess, namespace: str, name: str, replicas: int) -> dict[str, Any]:
    """Waits for phase Ready with `replicas` ready replicas; returns that status."""

    def ready() -> dict[str, Any] | None:
        status = idep_status(cluster, namespace, name)
        return status if status.get("phase") == "Ready" and status.get("readyReplicas") == replicas else None

    return wait_for(ready, READY_TIMEOUT_SECONDS, f"{name} Ready with {replicas} ready replicas")


def runtime_pods(cluster: ClusterAccess, namespace: str, name: str) -> list[dict[str, Any]]:
    """The resource's runtime pods, by its instance label."""
    return list(cluster.get("pods", namespace=namespace, **{INSTANCE_LABEL: name}))
