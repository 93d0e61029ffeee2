"""A tiny real HTTP server on 127.0.0.1 that answers `/api/v1/query` from a table, for testing the
Prometheus client and the signal parsing over a real socket (no mocks of httpx)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from tests.quiet_http import QuietHandler, QuietServer


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    delay_seconds: float = 0.0


def vector(*samples: tuple[dict[str, str], float | str], at: float = 1_800_000_000.0) -> Reply:
    result = [{"metric": labels, "value": [at, str(value)]} for labels, value in samples]
    return Reply(body=json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}))


@dataclass
class PrometheusStub:
    url: str
    replies: dict[str, Reply] = field(default_factory=dict)
    default: Reply = field(default_factory=vector)
    queries: list[dict[str, list[str]]] = field(default_factory=list)


@contextmanager
def serve_prometheus_stub() -> Iterator[PrometheusStub]:
    stub = PrometheusStub(url="")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            stub.queries.append(form)
            reply = (
                stub.replies.get(form.get("query", [""])[0], stub.default)
                if self.path == "/api/v1/query"
                else Reply(404, "not found")
            )
            if reply.delay_seconds:
                time.sleep(reply.delay_seconds)
            self.reply(reply.status, reply.body.encode(), "application/json")

    class Server(QuietServer):
        request_queue_size = 64  # the signal queries arrive all at once

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def answer_signals(
    stub: PrometheusStub, queries: dict[str, str], values: Mapping[str, float | str | None]
) -> None:
    """Make the stub answer each signal query (by name, from `signal_queries`) with one value, or with
    no series for None."""
    for name, value in values.items():
        stub.replies[queries[name]] = vector() if value is None else vector(({}, value))
