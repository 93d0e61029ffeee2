"""The local control plane's service proxy, against a real API server: a berth Service answers on
127.0.0.1 through the proxy and follows its EndpointSlices, and the operator leaves the proxy's
annotation on the Service alone. (Prometheus, the other stand-in for a cluster service, is in
test_local_services_prometheus.py.)

KWOK's pods do not serve, so the proxy's endpoints are servers this test runs (endpoint_standins.py),
named in EndpointSlices written by hand for a Service without a selector (as an external endpoint
would be), one slice each.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import processes
from tests.cluster.service_proxy import ANNOTATION, SERVICES_FILE, start_service_proxy
from tests.integration.endpoint_standins import (
    CHUNK_GAP_SECONDS,
    CHUNKS,
    CountingEndpoint,
    Endpoint,
    HttpEndpoint,
    host_address,
)
from tests.integration.idep_reads import idep_manifest
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
FOLLOW_SECONDS = 1.0
"""How soon after a slice is written the proxy must route by it."""


@pytest.fixture
def endpoints() -> Iterator[dict[str, Endpoint]]:
    host = host_address()
    if host is None:
        pytest.skip("no non-loopback IPv4 address: EndpointSlices refuse 127.0.0.0/8")
    made = {name: Endpoint(name, HttpEndpoint(host, name), CountingEndpoint(host, name)) for name in "ab"}
    for endpoint in made.values():
        for server in (endpoint.http, endpoint.raw):
            threading.Thread(target=server.serve_forever, daemon=True).start()
    yield made
    for endpoint in made.values():
        for server in (endpoint.http, endpoint.raw):
            server.shutdown()
            server.server_close()


@dataclass
class _Proxy:
    pid: int
    state_dir: Path
    log_path: Path

    def address(self, namespace: str, service: str, port: str) -> str | None:
        table: dict[str, dict[str, str]] = json.loads((self.state_dir / SERVICES_FILE).read_text())
        return table.get(f"{namespace}/{service}", {}).get(port)


@pytest.fixture
def service_proxy(cluster: ClusterAccess, tmp_path: Path) -> Iterator[_Proxy]:
    proxy = _Proxy(0, tmp_path / "proxy", tmp_path / "service-proxy.log")
    proxy.pid = start_service_proxy(cluster.kubeconfig, proxy.state_dir, proxy.log_path)
    yield proxy
    processes.stop(proxy.pid, str(proxy.state_dir.resolve()))
    print(f"\n----- service proxy log ({proxy.log_path}) -----\n{proxy.log_path.read_text()[-4000:]}")


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "berth"}},
        "spec": {
            "ports": [
                {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"},
                {"name": "raw", "port": 9000, "targetPort": "raw", "protocol": "TCP"},
            ]
        },
    }


def _slice(service: str, endpoint: Endpoint, **conditions: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{endpoint.name}",
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "berth-tests",
            },
        },
        "addressType": "IPv4",
        "ports": endpoint.slice_ports(),
        "endpoints": [{"addresses": [endpoint.http.server_address[0]], "conditions": conditions}],
    }


def _who(address: str) -> str:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/who")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _stream_arrivals(address: str) -> list[float]:
    """Seconds from the request to the arrival of each server-sent event, read off the socket."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET /stream HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n")
        started, received = time.monotonic(), b""
        arrivals: list[float] = []
        while chunk := connection.recv(65536):
            received += chunk
            while len(arrivals) < CHUNKS and f"data: {len(arrivals)}".encode() in received:
                arrivals.append(time.monotonic() - started)
    return arrivals


def _count_after_half_close(address: str, payload: bytes) -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.decode()


def _seconds_until_only(address: str, wanted: set[str], since: float) -> float:
    """Seconds from ``since`` until four answers in a row came from ``wanted`` (with two ready
    endpoints taking turns, four in a row means the other one is out)."""
    streak = 0
    while streak < 4:
        streak = streak + 1 if _who(address) in wanted else 0
        if time.monotonic() - since > TIMEOUT:
            raise AssertionError(f"answers still came from outside {wanted} after {TIMEOUT:.0f} s")
    return time.monotonic() - since


def test_a_berth_service_answers_on_its_ready_endpoints_and_follows_their_slices(
    cluster: ClusterAccess, namespace: str, endpoints: dict[str, Endpoint], service_proxy: _Proxy
) -> None:
    a, b = endpoints["a"], endpoints["b"]
    cluster.apply(_service("chat"), namespace=namespace)
    cluster.apply(_slice("chat", a, ready=True), namespace=namespace)
    cluster.apply(_slice("chat", b, ready=True), namespace=namespace)
    address = wait_for(
        lambda: service_proxy.address(namespace, "chat", "http"), TIMEOUT, "chat in services.json"
    )
    raw_address = service_proxy.address(namespace, "chat", "raw")
    assert raw_address is not None and raw_address != address
    wait_for(
        lambda: (
            cluster.get("service", "chat", namespace=namespace)["metadata"]
            .get("annotations", {})
            .get(ANNOTATION)
            == address
        ),
        TIMEOUT,
        f"the Service annotated {ANNOTATION}={address}",
    )

    # Two ready endpoints take turns.
    assert sorted(_who(address) for _ in range(6)) == ["a", "a", "a", "b", "b", "b"]

    # A streamed answer arrives event by event, not when the stream ends.
    arrivals = _stream_arrivals(address)
    assert len(arrivals) == CHUNKS, arrivals
    assert arrivals[0] < CHUNK_GAP_SECONDS, arrivals
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap > CHUNK_GAP_SECONDS / 2 for gap in gaps), arrivals

    # The client finishes sending (FIN) and still reads the whole answer.
    assert _count_after_half_close(raw_address, b"x" * 100_000) in {
        "a got 100000 bytes",
        "b got 100000 bytes",
    }

    # b turns unready: new connections stop going there within a second of the write.
    cluster.apply(_slice("chat", b, ready=False), namespace=namespace)
    assert _seconds_until_only(address, {"a"}, time.monotonic()) < FOLLOW_SECONDS
    # Ready again but terminating: still never chosen.
    cluster.apply(_slice("chat", b, ready=True, terminating=True), namespace=namespace)
    assert [_who(address) for _ in range(4)] == ["a"] * 4

    # Nothing ready: a connection is reset at once rather than answered by anything.
    cluster.apply(_slice("chat", a, ready=False), namespace=namespace)
    wait_for(lambda: _refused(address), FOLLOW_SECONDS + 5, "connections to be refused with nothing ready")
    started = time.monotonic()
    assert _refused(address)
    assert time.monotonic() - started < 0.5

    # And back: b ready, not terminating.
    cluster.apply(_slice("chat", b, ready=True), namespace=namespace)
    assert _seconds_until_only(address, {"b"}, time.monotonic()) < FOLLOW_SECONDS + 1
    assert service_proxy.address(namespace, "chat", "http") == address  # one address for the proxy's life


def _refused(address: str) -> bool:
    try:
        _who(address)
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return True
    return False


def _service_applied_events(cluster: ClusterAccess, namespace: str, name: str) -> int:
    events = cluster.get("events", namespace=namespace)
    return sum(
        1
        for event in events
        if event.get("reason") == "Applied"
        and event["involvedObject"].get("name") == name
        and f"Service {name}" in event.get("message", "")
    )


def test_the_operator_leaves_the_proxys_annotation_alone(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, service_proxy: _Proxy
) -> None:
    crds.apply(idep_manifest("annotated"), namespace=namespace)
    wait_for(
        lambda: (
            (
                condition(
                    crds.get_or_none("inferencedeployment", "annotated", namespace=namespace), "Accepted"
                )
                or {}
            ).get("status")
            == "True"
        ),
        TIMEOUT,
        "annotated Accepted",
    )
    address = wait_for(
        lambda: service_proxy.address(namespace, "annotated", "http"), TIMEOUT, "annotated in services.json"
    )
    wait_for(
        lambda: (
            crds.get("service", "annotated", namespace=namespace)["metadata"]
            .get("annotations", {})
            .get(ANNOTATION)
            == address
        ),
        TIMEOUT,
        "the proxy's annotation",
    )
    applied = _service_applied_events(crds, namespace, "annotated")
    # Longer than Kopf's batch window, so the annotation's watch event is handled on its own.
    time.sleep(1.0)

    # A field berth applied, changed by someone else, is drift: repaired, with an Applied Event. The
    # annotation came before it on the same object's event stream, and caused no repair of its own.
    crds.kubectl(
        "label",
        "service",
        "annotated",
        "app.kubernetes.io/component=edited",
        "--overwrite",
        namespace=namespace,
    )
    wait_for(
        lambda: (
            crds.get("service", "annotated", namespace=namespace)["metadata"]["labels"][
                "app.kubernetes.io/component"
            ]
            != "edited"
        ),
        TIMEOUT,
        "the edited label to be restored",
    )
    wait_for(
        lambda: _service_applied_events(crds, namespace, "annotated") > applied,
        TIMEOUT,
        "the repair's Applied Event",
    )
    assert _service_applied_events(crds, namespace, "annotated") == applied + 1
    service = json.loads(
        crds.kubectl(
            "get", "service", "annotated", "-o", "json", "--show-managed-fields", namespace=namespace
        )
    )
    assert service["metadata"]["annotations"][ANNOTATION] == address
    managers = {entry["manager"] for entry in service["metadata"]["managedFields"]}
    assert {"berth-operator", "berth-service-proxy"} <= managers
    accepted = condition(crds.get("inferencedeployment", "annotated", namespace=namespace), "Accepted")
    assert accepted is not None and accepted["status"] == "True", accepted
