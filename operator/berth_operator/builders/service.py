"""The ClusterIP Service clients (and Prometheus) reach the runtime pods through."""

from __future__ import annotations

from typing import Any

from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import common_labels, selector_labels


def service_manifest(
    context: BuildContext, name: str, selector: dict[str, str], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    """A ClusterIP Service of the resource's pods (or some of them), owned by the resource."""
    owner = context.owner.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": context.owner.namespace,
            "labels": common_labels(owner),
            "ownerReferences": [context.owner.reference()],
        },
        "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
    }


def http_port(context: BuildContext) -> dict[str, Any]:
    return {"name": "http", "port": context.spec.serving.port, "targetPort": "http", "protocol": "TCP"}


def build_service(context: BuildContext) -> dict[str, Any]:
    name, serving = context.owner.name, context.spec.serving
    metrics = {"name": "metrics", "port": serving.metrics_port, "targetPort": "metrics", "protocol": "TCP"}
    return service_manifest(context, name, selector_labels(name), [http_port(context), metrics])


def endpoint_url(context: BuildContext) -> str:
    """The in-cluster URL clients call."""
    owner = context.owner
    return f"http://{owner.name}.{owner.namespace}.svc:{context.spec.serving.port}"
