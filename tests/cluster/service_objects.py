"""Service and EndpointSlice bodies, as the API server returns them, that the service proxy's tests
feed it (test_service_proxy.py, test_service_proxy_routes.py): in namespace ``team``, Service
``chat`` with an ``http`` and a ``metrics`` port unless told otherwise."""

from __future__ import annotations

from typing import Any


def endpoint(address: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions}


def slice_body(
    name: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    service: str = "chat",
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}] if ports is None else ports,
        "endpoints": endpoints,
    }


def service_body(
    name: str = "chat", ports: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team", "annotations": annotations or {}},
        "spec": {
            "ports": ports
            or [
                {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
            ]
        },
    }
