"""The separate `--metrics-port`: `/metrics` in Prometheus' text format, whatever the scraper asks for.

Why not prometheus_client.start_http_server: since client_python 0.26 it answers the OpenMetrics Accept
header Prometheus sends (`...; escaping=underscores`) by escaping the names, so
`vllm:num_requests_running` is stored as `vllm_num_requests_running` and every vLLM-named query --
berth's autoscaler, KEDA scalers, the dashboards -- finds nothing. The text format (version 0.0.4)
keeps the colons, as the main port's /metrics (server/app.py) does.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> ThreadingHTTPServer:
    """Starts serving `registry` on host:port in a daemon thread; raises OSError when the port is taken."""

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served on the metrics port")
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a scrape every few seconds is not worth a log line

    server = ThreadingHTTPServer((host, port), MetricsHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()
    return server
