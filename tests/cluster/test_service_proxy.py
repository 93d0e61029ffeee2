"""The local service proxy fed Services and EndpointSlices as its watches would feed it: it routes in
turn to ready endpoints, follows slice changes, resets connections when nothing is ready, publishes
one address per Service port for its life, and writes (and takes off) only its own annotation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.service_objects import endpoint, service_body, slice_body
from tests.cluster.service_proxy import ANNOTATION, FIELD_MANAGER, SERVICES_FILE, ServiceProxy


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
            slice_body("chat-a", [endpoint("127.0.0.1", ready=a_ready)], [{"name": "http", "port": port_a}]),
            slice_body("chat-b", [endpoint("127.0.0.1", ready=b_ready)], [{"name": "http", "port": port_b}]),
        ]

    client = _RecordingClient()
    proxy = ServiceProxy(client, tmp_path)  # type: ignore[arg-type]
    await proxy.reset_slices(slices(True, True))
    assert not (tmp_path / SERVICES_FILE).exists()  # not before both lists arrived
    await proxy.reset_services([service_body()])
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
    await proxy.service_changed("MODIFIED", service_body(annotations={ANNOTATION: address}))
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
    await proxy.reset_services([service_body()])
    address = proxy.address("team", "chat", "http")
    assert address is not None
    await proxy.service_changed("DELETED", service_body())
    assert json.loads((tmp_path / SERVICES_FILE).read_text()) == {}
    with pytest.raises(ConnectionResetError):
        await _who(address)
    await proxy.service_changed("ADDED", service_body())
    assert json.loads((tmp_path / SERVICES_FILE).read_text())["team/chat"]["http"] == address
    await proxy.close()


async def test_stopping_takes_only_our_own_annotations_off(tmp_path: Path) -> None:
    client = _RecordingClient()
    proxy = ServiceProxy(client, tmp_path)  # type: ignore[arg-type]
    await proxy.reset_slices([])
    await proxy.reset_services(
        [service_body("ours"), service_body("theirs", annotations={ANNOTATION: "127.0.0.1:1"})]
    )
    ours = proxy.address("team", "ours", "http")
    await proxy.service_changed("MODIFIED", service_body("ours", annotations={ANNOTATION: str(ours)}))
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
