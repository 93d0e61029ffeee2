"""spec.serving.httpRoute on a real API server with the Gateway API's own HTTPRoute CRD installed.

Why: the route berth writes must pass the HTTPRoute schema as the Gateway API publishes it, carry the
canary's weight while a canary runs (the step's share once its replicas are ready), point its
weighted backends at Services that select the right pods, and go -- with those Services -- when the
spec drops it. The canary here has no Prometheus, so it holds at its first step: the weights can be
read at leisure.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.gateway_api import install_http_route_crd
from tests.integration.idep_reads import idep_manifest, wait_idep_ready
from tests.integration.operator_process import OperatorProcess
from tests.integration.rollout_support import wait_rollout, with_model_revision
from tests.integration.support import ClusterAccess, wait_for

pytestmark = pytest.mark.integration

NAME = "routed"
TIMEOUT = 90.0
ROUTE = {
    "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
    "hostnames": ["chat.example.com"],
}


def _backends(cluster: ClusterAccess, namespace: str) -> list[tuple[str, int]] | None:
    route = cluster.get_or_none("httproute", NAME, namespace=namespace)
    if route is None:
        return None
    return [(ref["name"], ref.get("weight", 1)) for ref in route["spec"]["rules"][0]["backendRefs"]]


def _ready_endpoints(cluster: ClusterAccess, namespace: str, service: str) -> int:
    slices = cluster.get("endpointslices", namespace=namespace, **{"kubernetes.io/service-name": service})
    return sum(
        1
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready") is True
    )


def test_the_route_follows_the_canary_and_goes_with_the_spec(
    cluster: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    install_http_route_crd(cluster)
    rollout = {"strategy": "Canary", "steps": [{"replicas": 1, "pauseSeconds": 600}]}
    manifest: dict[str, Any] = idep_manifest(NAME, replicas=2, rollout=rollout, serving={"httpRoute": ROUTE})
    cluster.apply(manifest, namespace=namespace)
    wait_idep_ready(cluster, namespace, NAME, 2)

    # Outside a canary: everything to the resource's Service; the API server took the route as written.
    assert wait_for(lambda: _backends(cluster, namespace), TIMEOUT, "the HTTPRoute") == [(NAME, 1)]
    route = cluster.get("httproute", NAME, namespace=namespace)
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    assert route["metadata"]["ownerReferences"][0]["name"] == NAME

    # A model swap starts the canary: 1 of 2 replicas, so half the traffic once it is ready.
    cluster.apply(with_model_revision(manifest, "next"), namespace=namespace)
    wait_rollout(
        cluster, namespace, NAME, lambda r: bool(r.get("stepStartTime")), TIMEOUT, "the canary step ready"
    )
    expected = [(f"{NAME}-stable", 50), (f"{NAME}-canary", 50)]
    wait_for(lambda: _backends(cluster, namespace) == expected, TIMEOUT, f"route weights {expected}")
    wait_for(
        lambda: _ready_endpoints(cluster, namespace, f"{NAME}-canary") == 1,
        TIMEOUT,
        "the canary Service's endpoint",
    )
    wait_for(
        lambda: _ready_endpoints(cluster, namespace, f"{NAME}-stable") == 1,
        TIMEOUT,
        "the stable Service's endpoint",
    )

    # Dropping the route deletes it and its two Services; the resource's own Service stays.
    patch = json.dumps([{"op": "remove", "path": "/spec/serving/httpRoute"}])
    cluster.kubectl("patch", "inferencedeployment", NAME, "--type=json", "-p", patch, namespace=namespace)
    wait_for(lambda: _backends(cluster, namespace) is None, TIMEOUT, "the HTTPRoute deleted")
    for service in (f"{NAME}-stable", f"{NAME}-canary"):
        wait_for(
            lambda s=service: cluster.get_or_none("service", s, namespace=namespace) is None,
            TIMEOUT,
            f"{service} deleted",
        )
    assert cluster.get_or_none("service", NAME, namespace=namespace) is not None
