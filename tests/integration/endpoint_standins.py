"""Servers that stand in for a Service's pods in test_local_services.py, where KWOK's pods do not
serve: per endpoint an HTTP server (/who answers the endpoint's name, /stream sends server-sent
events) and a raw TCP server that answers how many bytes came before the client's FIN.

The API server refuses loopback addresses in an EndpointSlice, so they listen on this host's own
non-loopback address, on one port per endpoint.
"""

from __future__ import annotations

import socket
import socketserver
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNKS = 5
CHUNK_GAP_SECONDS = 0.3


def host_address() -> str | None:
    """This host's outward IPv4 address (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


class HttpEndpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, name: str) -> None:
        super().__init__((host, 0), _Handler)
        self.name = name


class _Handler(BaseHTTPRequestHandler):
    """/who answers the endpoint's name; /stream sends CHUNKS server-sent events, one per gap."""

    protocol_version = "HTTP/1.1"
    server: HttpEndpoint

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


class CountingEndpoint(socketserver.ThreadingTCPServer):
    """Reads until the client's FIN, then answers how many bytes came and closes."""

    daemon_threads = True

    def __init__(self, host: str, name: str) -> None:
        super().__init__((host, 0), _CountingHandler)
        self.name = name


class _CountingHandler(socketserver.StreamRequestHandler):
    server: CountingEndpoint

    def handle(self) -> None:
        received = len(self.rfile.read())
        self.wfile.write(f"{self.server.name} got {received} bytes".encode())


@dataclass
class Endpoint:
    """One stand-in pod: an HTTP port and a raw TCP port on the host's address."""

    name: str
    http: HttpEndpoint
    raw: CountingEndpoint

    def slice_ports(self) -> list[dict[str, Any]]:
        return [
            {"name": "http", "port": self.http.server_address[1], "protocol": "TCP"},
            {"name": "raw", "port": self.raw.server_address[1], "protocol": "TCP"},
        ]
