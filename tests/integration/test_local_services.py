"""The local control plane's stand-ins for cluster services, against a real API server: a berth
Service answers on 127.0.0.1 through the service proxy, and Prometheus discovers the runtime pods
through the API server with the labels the autoscaler selects on.

KWOK's pods do not serve, so the proxy's endpoints are HTTP servers this test runs, named in
EndpointSlices written by hand for a Service without a selector (as an external endpoint would
be). The API server refuses loopback addresses in an EndpointSlice, so they listen on this host's
own non-loopback address, on one port per endpoint (one slice each).
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import socketserver
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from berth_operator.autoscaling.signals import SeriesSelector
from tests.cluster import processes
from tests.cluster.prometheus import JOB_NAME, start_prometheus, stop_prometheus
from tests.cluster.service_proxy import ANNOTATION, SERVICES_FILE, start_service_proxy
from tests.integration.idep_reads import idep_manifest
from tests.integration.live_metrics import prometheus_binary
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
CHUNKS = 5
CHUNK_GAP_SECONDS = 0.3
FOLLOW_SECONDS = 1.0
"""How soon after a slice is written the proxy must route by it."""


def _host_address() -> str | None:
    """This host's outward IPv4 address (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


class _HttpEndpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, name: str) -> None:
        super().__init__((host, 0), _Handler)
        self.name = name


class _Handler(BaseHTTPRequestHandler):
    """/who answers the endpoint's name; /stream sends CHUNKS server-sent events, one per gap."""

    protocol_version = "HTTP/1.1"
    server: _HttpEndpoint

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n in range(CHUNKS):
                event = f"data: {n}\n\n".encode()
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
                time.sleep(CHUNK_GAP_SECONDS)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CountingEndpoint(socketserver.ThreadingTCPServer):
    """Reads until the client's FIN, then answers how many bytes came and closes."""

    daemon_threads = True

    def __init__(self, host: str, name: str) -> None:
        super().__init__((host, 0), _CountingHandler)
        self.name = name


class _CountingHandler(socketserver.StreamRequestHandler):
    server: _CountingEndpoint

    def handle(self) -> None:
        received = len(self.rfile.read())
        self.wfile.write(f"{self.server.name} got {received} bytes".encode())


@dataclass
class _Endpoint:
    """One stand-in pod: an HTTP port and a raw TCP port on the host's address."""

    name: str
    http: _HttpEndpoint
    raw: _CountingEndpoint

    def slice_ports(self) -> list[dict[str, Any]]:
        return [
            {"name": "http", "port": self.http.server_address[1], "protocol": "TCP"},
            {"name": "raw", "port": self.raw.server_address[1], "protocol": "TCP"},
        ]


@pytest.fixture
def endpoints() -> Iterator[dict[str, _Endpoint]]:
    host = _host_address()
    if host is None:
        pytest.skip("no non-loopback IPv4 address: EndpointSlices refuse 127.0.0.0/8")
    made = {name: _Endpoint(name, _HttpEndpoint(host, name), _CountingEndpoint(host, name)) for name in "ab"}
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


def _slice(service: str, endpoint: _Endpoint, **conditions: bool) -> dict[str, Any]:
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
    cluster: ClusterAccess, namespace: str, endpoints: dict[str, _Endpoint], service_proxy: _Proxy
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


@pytest.mark.skipif(
    prometheus_binary() is None, reason="prometheus is not installed (scripts/test.sh installs it)"
)
def test_prometheus_discovers_the_runtime_pods_with_the_labels_the_autoscaler_selects(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    crds.apply(idep_manifest("scraped", replicas=2), namespace=namespace)
    pid, url = start_prometheus(crds.kubeconfig, tmp_path / "prometheus", namespaces=[namespace])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    try:
        selector = SeriesSelector(namespace=namespace, instance="scraped")

        def pods() -> dict[str, int]:
            """Running pods with an IP, by name, with their metrics port."""
            found = crds.get("pods", namespace=namespace, **{"app.kubernetes.io/instance": "scraped"})
            return {
                pod["metadata"]["name"]: next(
                    port["containerPort"]
                    for container in pod["spec"]["containers"]
                    for port in container.get("ports", [])
                    if port["name"] == "metrics"
                )
                for pod in found
                if pod["status"].get("podIP") and not pod["metadata"].get("deletionTimestamp")
            }

        def targets_match(expected_count: int) -> list[dict[str, Any]] | None:
            running = pods()
            active = _get(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
            ours = [t for t in active if t["labels"].get(selector.namespace_label) == namespace]
            expected = {(name, f":{port}/metrics") for name, port in running.items()}
            seen = {(t["labels"].get("pod"), t["scrapeUrl"][t["scrapeUrl"].rindex(":") :]) for t in ours}
            if len(running) == expected_count and seen == expected:
                return ours
            return None

        ours = wait_for(
            lambda: targets_match(2), TIMEOUT, "a scrape target per runtime pod, metrics port only"
        )
        for target in ours:
            assert target["labels"][selector.instance_label] == "scraped"
            assert target["labels"]["job"] == JOB_NAME
        # The series carry exactly what the autoscaler's matchers select (up=0: KWOK pods do not serve).
        wait_for(
            lambda: len(_query(url, f"up{selector.matchers()}")) == 2,
            TIMEOUT,
            "up series under the autoscaler's matchers",
        )

        crds.kubectl("scale", "inferencedeployment", "scraped", "--replicas=1", namespace=namespace)
        wait_for(lambda: targets_match(1), TIMEOUT, "the removed pod's target to go")
    finally:
        stop_prometheus(pid, tmp_path / "prometheus")
    # One PID stands for the discovery and Prometheus, its child: stopping it stops both.
    assert len(children) == 1, children
    assert not processes.is_alive(pid) and not processes.is_alive(int(children[0]))


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    return list(_get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")["data"]["result"])
