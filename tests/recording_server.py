"""A tiny real HTTP(S) server on 127.0.0.1 that records each request's headers and answers
`/api/v1/query` with `vector(1)`'s reply -- or 401 when it asks for basic auth and gets other
credentials, or a fixed status -- for testing what the Prometheus client sends and how it checks TLS."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.quiet_http import QuietHandler, QuietServer

VECTOR_ONE = json.dumps(
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "1"]}]}}
)


@dataclass
class RecordingServer:
    port: int = 0
    scheme: str = "http"
    headers: list[dict[str, str]] = field(default_factory=list)
    basic_auth: tuple[str, str] | None = None
    """When set, requests without exactly these credentials get 401."""
    status: int | None = None
    """When set, every request gets this status with `body`."""
    body: str = ""

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"


@contextmanager
def serve_recording(tls: ssl.SSLContext | None = None) -> Iterator[RecordingServer]:
    """Serve until the block ends; with `tls`, HTTPS with that server-side context."""
    recording = RecordingServer(scheme="https" if tls else "http")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            recording.headers.append({name.lower(): value for name, value in self.headers.items()})
            status, body = 200, VECTOR_ONE
            if recording.basic_auth is not None:
                expected = base64.b64encode(":".join(recording.basic_auth).encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    status, body = 401, "Unauthorized\n"
            if recording.status is not None:
                status, body = recording.status, recording.body
            self.reply(status, body.encode())

    server = QuietServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    recording.port = server.server_address[1]
    try:
        yield recording
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
