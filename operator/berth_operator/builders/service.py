"""The ClusterIP Service clients (and Prometheus) reach the runtime pods through."""

from __future__ import annotations

from typing import Any

from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import common_labels, selector_labels


def build_service(context: BuildContext) -> dict[str, Any]:
    name, serving = context.owner.name, context.spec.serving
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": context.owner.namespace,
            "labels": common_labels(name),
            "ownerReferences": [context.owner.reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {"name": "http", "port": serving.port, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": serving.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def endpoint_url(context: BuildContext) -> str:
    """The in-cluster URL clients call."""
    owner = context.owner
    return f"http://{owner.name}.{owner.namespace}.svc:{context.spec.serving.port}"
