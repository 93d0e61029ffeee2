"""Pod addresses: a /24 this host answers on, one address per pod, given back when the pod ends.

Why not 127.0.0.0/8, which every Linux host answers on without setup: the API server refuses
loopback addresses in EndpointSlices (``ValidateEndpointIP``: "may not be in the loopback range"),
so a Service in front of such pods would never get an endpoint, and that is half of what these nodes
are for. Instead the agent makes a private /24 local with one ``ip route add local <subnet> dev lo``
(Linux "AnyIP": every address of a ``local`` route can be bound and reached, no per-address setup).
That needs CAP_NET_ADMIN (root in CI and here); the agent removes the route when it stops and
``down`` removes a route left behind. Without the capability the agent falls back to a /24 inside
127.0.0.0/8: pods still get their own addresses, run and answer, but EndpointSlices list nothing;
the node's ``node.berth.dev/pod-network`` annotation says which mode is in force.

Each agent takes the first free /24 of 10.213.0.0/16, starting from a slot hashed from its state
folder, so clusters started side by side (parallel test sessions) never share addresses; ``ip``
refusing an existing route ("File exists") is the lock.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROUTED_POOL = ipaddress.IPv4Network("10.213.0.0/16")
LOOPBACK_POOL = ipaddress.IPv4Network("127.10.0.0/16")
ROUTE_FILE = "pod-subnet"
"""File in the agent's state folder naming the routed subnet it added, for ``down`` to remove."""

log = logging.getLogger(__name__)


class NetworkError(RuntimeError):
    """No pod subnet could be set up in the mode asked for."""


@dataclass(frozen=True)
class PodSubnet:
    network: ipaddress.IPv4Network
    routed: bool
    """True: a local route the agent added (EndpointSlices work); False: loopback fallback."""

    def describe(self) -> str:
        mode = "local route" if self.routed else "loopback, EndpointSlices stay empty"
        return f"{self.network} ({mode})"


def _slots(pool: ipaddress.IPv4Network, seed: str) -> Iterator[ipaddress.IPv4Network]:
    subnets = list(pool.subnets(new_prefix=24))
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(subnets)
    for offset in range(len(subnets)):
        yield subnets[(start + offset) % len(subnets)]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _add_route(subnet: ipaddress.IPv4Network) -> str | None:
    """None when added; else ``ip``'s complaint."""
    try:
        result = _ip("route", "add", "local", str(subnet), "dev", "lo")
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if result.returncode == 0 else result.stderr.strip() or f"exit {result.returncode}"


def remove_route(subnet: str) -> None:
    try:
        _ip("route", "del", "local", subnet, "dev", "lo")
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("could not remove the local route %s: %s", subnet, error)


def set_up_subnet(state_dir: Path, mode: str) -> PodSubnet:
    """A subnet for this agent's pods: ``mode`` is route, loopback or auto (route, else loopback)."""
    if mode not in ("auto", "route", "loopback"):
        raise NetworkError(f"pod network mode {mode!r}; expected auto, route or loopback")
    seed = str(state_dir.resolve())
    if mode != "loopback":
        complaint = ""
        for subnet in _slots(ROUTED_POOL, seed):
            complaint = _add_route(subnet) or ""
            if not complaint:
                (state_dir / ROUTE_FILE).write_text(f"{subnet}\n")
                return PodSubnet(subnet, routed=True)
            if "File exists" not in complaint:
                break
        if mode == "route":
            raise NetworkError(f"cannot add a local route for pods: {complaint}")
        log.warning("no local route for pods (%s): falling back to loopback addresses", complaint)
    return PodSubnet(next(_slots(LOOPBACK_POOL, seed)), routed=False)


def tear_down_subnet(state_dir: Path) -> None:
    """Removes the route this agent (or a dead one with this state folder) added."""
    record = state_dir / ROUTE_FILE
    if record.is_file():
        remove_route(record.read_text().strip())
        record.unlink(missing_ok=True)


def _listening_addresses() -> set[str]:
    """IPv4 addresses something on this host listens on (/proc/net/tcp, state 0A)."""
    found: set[str] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            packed = bytes.fromhex(fields[1].split(":")[0])
            found.add(str(ipaddress.IPv4Address(packed[::-1])))
    return found


@dataclass
class AddressPool:
    """Hands out the subnet's addresses: the first ``reserved`` go to nodes, the rest to pods,
    round-robin (a just-freed address is not reused at once) and never one something listens on."""

    subnet: PodSubnet
    reserved: int
    _in_use: set[str] = field(default_factory=set)
    _cursor: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def node_address(self, index: int) -> str:
        return str(self.subnet.network.network_address + 1 + index)

    def allocate(self) -> str:
        hosts = list(self.subnet.network.hosts())[self.reserved :]
        with self._lock:
            busy = self._in_use | _listening_addresses()
            for step in range(len(hosts)):
                candidate = str(hosts[(self._cursor + step) % len(hosts)])
                if candidate not in busy:
                    self._cursor = (self._cursor + step + 1) % len(hosts)
                    self._in_use.add(candidate)
                    return candidate
        raise NetworkError(f"no free pod address left in {self.subnet.network}")

    def release(self, address: str) -> None:
        with self._lock:
            self._in_use.discard(address)
