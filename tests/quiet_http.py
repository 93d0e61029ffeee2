"""The base of the tests' tiny real HTTP servers (a Prometheus stub, replicas' metrics ports, a
recording server): threaded, silent, and unbothered by a client that hangs up on purpose -- a
client that timed out or refused the server's certificate is what some tests are about -- with one
way to send a whole reply."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    def reply(self, status: int, payload: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return
