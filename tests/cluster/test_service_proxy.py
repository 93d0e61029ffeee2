"""The local service proxy routes as kube-proxy does, without a cluster: endpoint selection from
EndpointSlices, port matching, turn-taking, byte forwarding (streaming, half-close) and the proxy's
reaction to slice changes fed to it as a watch would."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.api_access import KubeconfigError, from_kubeconfig
from tests.cluster.api_watch import Gone, list_and_watch
from tests.cluster.service_proxy import (
    ANNOTATION,
    FIELD_MANAGER,
    SERVICES_FILE,
    ServiceProxy,
    address_table,
    annotated_port,
)
from tests.cluster.service_routes import (
    Backend,
    RoundRobin,
    ServicePort,
    ready_backends,
    service_ports,
    slice_port,
)
from tests.cluster.tcp_splice import splice

HTTP = ServicePort("http", 8000, "http")


def _endpoint(address: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions}


def _slice(
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


def _service(
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


# ---- endpoint selection and port matching


def test_only_ready_endpoints_that_are_not_terminating_get_connections() -> None:
    endpoints = [
        _endpoint("10.0.0.1", ready=True),
        _endpoint("10.0.0.2", ready=False),
        _endpoint("10.0.0.3", ready=True, terminating=True),
        _endpoint("10.0.0.4", ready=False, serving=True, terminating=True),
        _endpoint("10.0.0.5"),  # no ready condition: the API reads it as ready
    ]
    assert ready_backends(HTTP, [_slice("a", endpoints)]) == [
        Backend("10.0.0.1", 8000),
        Backend("10.0.0.5", 8000),
    ]


def test_endpoints_of_every_slice_count_once_each() -> None:
    moving = _endpoint("10.0.0.1", ready=True)
    slices = [
        _slice("a", [moving, _endpoint("10.0.0.2", ready=True)]),
        _slice("b", [moving, {"addresses": [], "conditions": {"ready": True}}]),
        _slice("c", [_endpoint("10.0.0.3", ready=True)], ports=[{"name": "http", "port": 8001}]),
    ]
    assert ready_backends(HTTP, slices) == [
        Backend("10.0.0.1", 8000),
        Backend("10.0.0.2", 8000),
        Backend("10.0.0.3", 8001),  # a slice of a newer revision may serve on another port number
    ]


def test_each_service_port_goes_to_the_slice_port_of_its_name() -> None:
    both = _slice(
        "a",
        [_endpoint("10.0.0.1", ready=True)],
        ports=[{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}],
    )
    http, metrics = service_ports(_service())
    assert (slice_port(http, both), slice_port(metrics, both)) == (8000, 9090)
    only_http = _slice("b", [], ports=[{"name": "http", "port": 8000}])
    assert slice_port(metrics, only_http) is None
    assert ready_backends(metrics, [_slice("c", [_endpoint("10.0.0.1", ready=True)])]) == []


def test_a_hand_written_slice_may_name_the_target_port_or_give_its_number() -> None:
    named_target = ServicePort("api", 80, "http")
    assert slice_port(named_target, _slice("a", [], ports=[{"name": "http", "port": 8000}])) == 8000
    numbered_target = ServicePort("api", 80, 8000)
    assert slice_port(numbered_target, _slice("b", [], ports=[{"port": 8000}])) == 8000
    assert slice_port(numbered_target, _slice("c", [], ports=[{"port": 8001}])) is None
    # The name decides when it matches: a targetPort number never overrides it.
    assert slice_port(numbered_target, _slice("d", [], ports=[{"name": "api", "port": 7000}])) == 7000


def test_an_unnamed_port_matches_the_unnamed_slice_port() -> None:
    (unnamed,) = service_ports(_service(ports=[{"port": 80, "targetPort": 8000}]))
    assert unnamed.key == "80"
    assert slice_port(unnamed, _slice("a", [], ports=[{"port": 8000, "protocol": "TCP"}])) == 8000
    assert slice_port(unnamed, _slice("b", [], ports=[{"name": "", "port": 8001}])) == 8001


def test_udp_ports_are_neither_proxied_nor_matched() -> None:
    ports = service_ports(
        _service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 80}])
    )
    assert [port.name for port in ports] == ["http"]
    udp_slice = _slice("a", [], ports=[{"name": "http", "port": 8000, "protocol": "UDP"}])
    assert slice_port(ports[0], udp_slice) is None


def test_round_robin_takes_turns_and_survives_a_list_that_shrinks() -> None:
    turns = RoundRobin()
    three = [Backend("10.0.0.1", 1), Backend("10.0.0.2", 1), Backend("10.0.0.3", 1)]
    firsts = [turns.order(three)[0].address for _ in range(4)]
    assert firsts == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert turns.order(three) == [three[1], three[2], three[0]]  # the rest are fallbacks, in turn
    assert turns.order(three[:1]) == three[:1]
    assert turns.order([]) == []


def test_the_address_table_lists_services_that_exist_by_port_key() -> None:
    services = {("team", "chat"): _service(), ("team", "gone-port"): _service(ports=[{"port": 81}])}
    listening = {
        ("team", "chat", "http"): 40001,
        ("team", "chat", "metrics"): 40002,
        ("team", "old", "http"): 1,
    }
    assert address_table(services, listening) == {
        "team/chat": {"http": "127.0.0.1:40001", "metrics": "127.0.0.1:40002"}
    }


def test_the_annotation_names_the_http_port_else_the_first() -> None:
    assert annotated_port(service_ports(_service())) == ServicePort("http", 8000, "http")
    grpc_first = _service(ports=[{"name": "grpc", "port": 8001}, {"name": "admin", "port": 8002}])
    assert annotated_port(service_ports(grpc_first)) == ServicePort("grpc", 8001, None)
    assert annotated_port([]) is None


# ---- byte forwarding


@contextlib.asynccontextmanager
async def _spliced(backend_handler: Any) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A client connected through ``splice`` to a backend server running ``backend_handler``;
    every connection is ended on exit, even when the test fails halfway."""
    handlers: set[asyncio.Task[Any]] = set()

    def tracked(handler: Any) -> Any:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.add(asyncio.current_task())  # type: ignore[arg-type]
            await handler(reader, writer)

        return run

    backend = await asyncio.start_server(tracked(backend_handler), "127.0.0.1", 0)
    backend_port = backend.sockets[0].getsockname()[1]

    async def proxy_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await splice((reader, writer), await asyncio.open_connection("127.0.0.1", backend_port))

    proxy = await asyncio.start_server(tracked(proxy_handler), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.sockets[0].getsockname()[1])
    try:
        yield reader, writer
    finally:
        writer.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        backend.close()
        proxy.close()


async def test_splice_passes_each_write_through_as_it_happens() -> None:
    async def streamer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(4):
            writer.write(f"data: {n}\n\n".encode())
            await writer.drain()
            await asyncio.sleep(0.15)
        writer.close()

    async with _spliced(streamer) as (reader, _):
        arrivals = []
        started = time.monotonic()
        for n in range(4):
            event = f"data: {n}\n\n".encode()
            assert await asyncio.wait_for(reader.readexactly(len(event)), 2) == event
            arrivals.append(time.monotonic() - started)
        assert await asyncio.wait_for(reader.read(), 2) == b""
    assert arrivals[0] < 0.1, arrivals  # the first event did not wait for the rest
    assert all(later - earlier > 0.1 for earlier, later in itertools.pairwise(arrivals)), arrivals


async def test_splice_passes_a_half_close_on_and_the_answer_still_comes_back() -> None:
    async def counter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until the client's FIN arrives
        writer.write(f"got {len(received)} bytes".encode())
        writer.close()

    async with _spliced(counter) as (reader, writer):
        writer.write(b"x" * 200_000)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
    assert answer == b"got 200000 bytes"


# ---- the proxy fed as its watches would feed it


class _RecordingClient:
    """Stands in for the API: records merge patches (the proxy's only write)."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any], str]] = []

    async def merge_patch(self, path: str, patch: dict[str, Any], field_manager: str) -> int:
        self.patches.append((path, patch, field_manager))
        return 200


async def _who(address: str) -> bytes:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_the_proxy_routes_in_turn_follows_slice_changes_and_resets_without_endpoints(
    tmp_path: Path,
) -> None:
    async def named(name: bytes) -> tuple[asyncio.Server, int]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(name)
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        return server, int(server.sockets[0].getsockname()[1])

    (server_a, port_a), (server_b, port_b) = await named(b"a"), await named(b"b")

    def slices(a_ready: bool, b_ready: bool) -> list[dict[str, Any]]:
        return [
            _slice("chat-a", [_endpoint("127.0.0.1", ready=a_ready)], [{"name": "http", "port": port_a}]),
            _slice("chat-b", [_endpoint("127.0.0.1", ready=b_ready)], [{"name": "http", "port": port_b}]),
        ]

    client = _RecordingClient()
    proxy = ServiceProxy(client, tmp_path)  # type: ignore[arg-type]
    await proxy.reset_slices(slices(True, True))
    assert not (tmp_path / SERVICES_FILE).exists()  # not before both lists arrived
    await proxy.reset_services([_service()])
    address = proxy.address("team", "chat", "http")
    assert address is not None
    assert json.loads((tmp_path / SERVICES_FILE).read_text()) == {
        "team/chat": {"http": address, "metrics": proxy.address("team", "chat", "metrics")}
    }

    assert sorted([await _who(address) for _ in range(4)]) == [b"a", b"a", b"b", b"b"]
    for endpoint_slice in slices(True, False):
        await proxy.slice_changed("MODIFIED", endpoint_slice)
    assert [await _who(address) for _ in range(4)] == [b"a"] * 4
    await proxy.slice_changed("DELETED", slices(True, False)[0])
    with pytest.raises(ConnectionResetError):  # nothing ready: reset at once, no made-up answer
        await _who(address)
    await proxy.slice_changed("ADDED", slices(False, True)[1])
    assert [await _who(address) for _ in range(2)] == [b"b"] * 2

    await asyncio.sleep(0)  # the annotation is written in the background
    assert client.patches == [
        (
            "/api/v1/namespaces/team/services/chat",
            {"metadata": {"annotations": {ANNOTATION: address}}},
            FIELD_MANAGER,
        )
    ]
    # Already annotated with our address: nothing more to write; the address never changes.
    await proxy.service_changed("MODIFIED", _service(annotations={ANNOTATION: address}))
    await asyncio.sleep(0)
    assert len(client.patches) == 1
    assert proxy.address("team", "chat", "http") == address
    await proxy.close()
    server_a.close()
    server_b.close()


async def test_a_deleted_service_stops_answering_and_gets_its_address_back_when_made_again(
    tmp_path: Path,
) -> None:
    proxy = ServiceProxy(_RecordingClient(), tmp_path)  # type: ignore[arg-type]
    await proxy.reset_slices([])
    await proxy.reset_services([_service()])
    address = proxy.address("team", "chat", "http")
    assert address is not None
    await proxy.service_changed("DELETED", _service())
    assert json.loads((tmp_path / SERVICES_FILE).read_text()) == {}
    with pytest.raises(ConnectionResetError):
        await _who(address)
    await proxy.service_changed("ADDED", _service())
    assert json.loads((tmp_path / SERVICES_FILE).read_text())["team/chat"]["http"] == address
    await proxy.close()


async def test_stopping_takes_only_our_own_annotations_off(tmp_path: Path) -> None:
    client = _RecordingClient()
    proxy = ServiceProxy(client, tmp_path)  # type: ignore[arg-type]
    await proxy.reset_slices([])
    await proxy.reset_services(
        [_service("ours"), _service("theirs", annotations={ANNOTATION: "127.0.0.1:1"})]
    )
    ours = proxy.address("team", "ours", "http")
    await proxy.service_changed("MODIFIED", _service("ours", annotations={ANNOTATION: str(ours)}))
    await proxy.close()
    client.patches.clear()
    await proxy.remove_own_annotations()
    assert client.patches == [
        (
            "/api/v1/namespaces/team/services/ours",
            {"metadata": {"annotations": {ANNOTATION: None}}},
            FIELD_MANAGER,
        )
    ]


# ---- list, then watch


class _ScriptedApi:
    """Answers lists from a queue and plays one scripted watch per call; the last watch blocks."""

    def __init__(self, listings: list[dict[str, Any]], watches: list[list[Any]]) -> None:
        self.listings, self.watches = listings, watches
        self.watched_from: list[str] = []

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return self.listings.pop(0)

    async def watch(
        self, path: str, resource_version: str, label_selector: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            await asyncio.Event().wait()
        for step in self.watches.pop(0):
            if isinstance(step, Exception):
                raise step
            yield step


def _object(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


async def test_list_then_watch_resumes_from_the_last_version_and_lists_again_on_410() -> None:
    api = _ScriptedApi(
        listings=[
            {"metadata": {"resourceVersion": "10"}, "items": [_object("a", "9")]},
            {"metadata": {"resourceVersion": "30"}, "items": [_object("b", "29")]},
        ],
        watches=[
            [("ADDED", _object("c", "11")), ("BOOKMARK", _object("", "15"))],  # the server ended this watch
            [("MODIFIED", _object("c", "16")), Gone("/things")],
        ],
    )
    resets: list[list[str]] = []
    changes: list[tuple[str, str]] = []

    async def on_reset(items: list[dict[str, Any]]) -> None:
        resets.append([item["metadata"]["name"] for item in items])

    async def on_change(event_type: str, obj: dict[str, Any]) -> None:
        changes.append((event_type, obj["metadata"]["name"]))

    task = asyncio.ensure_future(list_and_watch(api, "/things", "", on_reset, on_change))  # type: ignore[arg-type]
    while len(api.watched_from) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert resets == [["a"], ["b"]]
    assert changes == [("ADDED", "c"), ("MODIFIED", "c")]  # bookmarks only move the version on
    assert api.watched_from == ["10", "15", "30"]


# ---- kubeconfig


def test_a_kubeconfig_names_files_or_embeds_them(tmp_path: Path) -> None:
    local = {
        "current-context": "local",
        "contexts": [{"name": "local", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [
            {"name": "c", "cluster": {"server": "https://127.0.0.1:6443/", "certificate-authority": "ca.crt"}}
        ],
        "users": [
            {"name": "u", "user": {"client-certificate": "/pki/admin.crt", "client-key": "/pki/admin.key"}}
        ],
    }
    (tmp_path / "local.yaml").write_text(json.dumps(local))
    api = from_kubeconfig(tmp_path / "local.yaml", tmp_path / "secrets")
    assert (api.server, api.ca_file, api.cert_file, api.key_file) == (
        "https://127.0.0.1:6443",
        tmp_path / "ca.crt",  # relative to the kubeconfig
        Path("/pki/admin.crt"),
        Path("/pki/admin.key"),
    )
    kind = {
        "current-context": "kind",
        "contexts": [{"name": "kind", "context": {"cluster": "k", "user": "k"}}],
        "clusters": [
            {"name": "k", "cluster": {"server": "https://k:1", "certificate-authority-data": "Q0E="}}
        ],
        "users": [
            {
                "name": "k",
                "user": {"client-key-data": "S0VZ", "client-certificate-data": "Q0VSVA==", "token": "t"},
            }
        ],
    }
    (tmp_path / "kind.yaml").write_text(json.dumps(kind))
    api = from_kubeconfig(tmp_path / "kind.yaml", tmp_path / "secrets")
    assert api.ca_file is not None and api.ca_file.read_bytes() == b"CA"
    assert api.cert_file is not None and api.cert_file.read_bytes() == b"CERT"
    assert api.key_file is not None and api.key_file.read_bytes() == b"KEY"
    assert api.headers() == {"Authorization": "Bearer t"}
    del kind["current-context"]
    (tmp_path / "kind.yaml").write_text(json.dumps(kind))
    with pytest.raises(KubeconfigError, match="no current-context"):
        from_kubeconfig(tmp_path / "kind.yaml", tmp_path / "secrets")
