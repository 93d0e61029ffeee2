"""Replicas' metrics ports as real HTTP servers on loopback addresses (127.0.0.1, 127.0.0.2, ...: on
Linux the whole 127.0.0.0/8 is the loopback), all on one port as a Deployment's pods share their
metrics port. Each serves the runtime's own `/metrics` (berth_runtime's `ServerMetrics` over an
`EngineStats` the test sets), or a reply the test chooses; a listed address with no server is a
replica that refuses connections."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from prometheus_client import generate_latest

from berth_runtime.engine.outputs import EngineStats
from berth_runtime.server.metrics import ServerMetrics
from tests.quiet_http import QuietHandler, QuietServer


@dataclass
class Replica:
    """One replica's metrics port: the engine's state its /metrics reports, or a fixed reply."""

    ip: str
    stats: EngineStats = field(default_factory=EngineStats)
    status: int = 200
    body: str | None = None
    """Served in place of the runtime's metrics, when set."""
    delay_seconds: float = 0.0
    requests: int = 0

    def serving(self, running: int, waiting: int) -> None:
        self.stats = EngineStats(num_running=running, num_waiting=waiting)


@dataclass
class Replicas:
    port: int
    by_ip: dict[str, Replica]

    def __getitem__(self, ip: str) -> Replica:
        return self.by_ip[ip]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_replicas(ips: Sequence[str], port: int | None = None) -> Iterator[Replicas]:
    """A metrics server on each of `ips`, on one port (a free one unless given)."""
    port = free_port() if port is None else port
    replicas = Replicas(port=port, by_ip={ip: Replica(ip) for ip in ips})
    with ExitStack() as stack:
        for ip in ips:
            stack.enter_context(_serve(replicas.by_ip[ip], port))
        yield replicas


@contextmanager
def _serve(replica: Replica, port: int) -> Iterator[None]:
    metrics = ServerMetrics("chat", lambda: replica.stats)

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            replica.requests += 1
            if replica.delay_seconds:
                time.sleep(replica.delay_seconds)
            if self.path != "/metrics":
                status, payload = 404, b"not found"
            elif replica.body is not None:
                status, payload = replica.status, replica.body.encode()
            else:
                status, payload = replica.status, generate_latest(metrics.registry)
            self.reply(status, payload, "text/plain; version=0.0.4")

    server = QuietServer((replica.ip, port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
