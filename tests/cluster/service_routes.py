"""Where a connection to a Service port goes: its ready endpoints, as kube-proxy would pick them.

Why: the local service proxy (tests/cluster/service_proxy.py) must route exactly as a cluster does,
or a test that passes here would fail on a real cluster: only to endpoints that are ready and not
terminating, on the port the EndpointSlice names for the Service port, spreading connections over
all of them. These rules are pure functions of the Service and its EndpointSlices (plain API
objects as JSON), so they are tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class ServicePort:
    """One TCP port of a Service, as its spec states it."""

    name: str
    """The port's name; "" for the one unnamed port a single-port Service may have."""
    port: int
    target_port: int | str | None

    @property
    def key(self) -> str:
        """How services.json and the proxy name the port: its name, else its number."""
        return self.name or str(self.port)


@dataclass(frozen=True, order=True)
class Backend:
    """One endpoint address and the port connections to it go to."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def service_ports(service: dict[str, Any]) -> list[ServicePort]:
    """The Service's TCP ports (UDP and SCTP are not proxied: nothing berth serves uses them)."""
    return [
        ServicePort(str(entry.get("name") or ""), int(entry["port"]), entry.get("targetPort"))
        for entry in service.get("spec", {}).get("ports") or []
        if entry.get("protocol", "TCP") == "TCP"
    ]


def slice_port(service_port: ServicePort, endpoint_slice: dict[str, Any]) -> int | None:
    """The port number this slice's endpoints serve ``service_port`` on, or None if it has none.

    The EndpointSlice controller names each slice port after the Service port, so the name decides
    (kube-proxy's rule). A slice written by hand may name its port after the Service's targetPort
    instead, or leave names out and give the targetPort number; both are accepted as a fallback.
    """
    ports = [
        entry
        for entry in endpoint_slice.get("ports") or []
        if entry.get("port") is not None and entry.get("protocol", "TCP") == "TCP"
    ]
    for entry in ports:
        if str(entry.get("name") or "") == service_port.name:
            return int(entry["port"])
    target = service_port.target_port
    for entry in ports:
        if isinstance(target, str) and entry.get("name") == target:
            return int(entry["port"])
        if isinstance(target, int) and not entry.get("name") and int(entry["port"]) == target:
            return target
    return None


def is_serving(endpoint: dict[str, Any]) -> bool:
    """Ready and not terminating. The API reads an absent ``ready`` as true ("unknown state should
    be interpreted as ready"), so only ``ready: false`` or ``terminating: true`` exclude."""
    conditions = endpoint.get("conditions") or {}
    return conditions.get("ready") is not False and conditions.get("terminating") is not True


def ready_backends(service_port: ServicePort, slices: Iterable[dict[str, Any]]) -> list[Backend]:
    """Every ready endpoint of ``service_port`` across the Service's slices, each once, in a fixed
    order (an endpoint listed by two slices while it moves between them counts once)."""
    backends: set[Backend] = set()
    for endpoint_slice in slices:
        port = slice_port(service_port, endpoint_slice)
        if port is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if addresses and is_serving(endpoint):
                backends.add(Backend(str(addresses[0]), port))  # kube-proxy uses the first address too
    return sorted(backends)


class RoundRobin:
    """Hands out backends in turn; the list may change between calls (endpoints come and go)."""

    def __init__(self) -> None:
        self._turn = 0

    def order(self, backends: list[Backend]) -> list[Backend]:
        """All backends, starting with the one whose turn it is (the rest are fallbacks to try if
        it refuses the connection); empty when there are none."""
        if not backends:
            return []
        start = self._turn % len(backends)
        self._turn += 1
        return backends[start:] + backends[:start]
