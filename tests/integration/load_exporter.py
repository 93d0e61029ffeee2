"""A stand-in runtime replica for the live autoscaling tests: the runtime's own `/metrics` code
(berth_runtime.server.metrics.ServerMetrics, so the exact vLLM metric names and buckets) driven by
synthetic traffic instead of a model, since no GPU or model is here.

    python -m tests.integration.load_exporter --port 9101 --profile /tmp/load.json

Ten times a second it reads the load profile (a JSON file the test rewrites to change the load)
and records the requests that finished in that tenth of a second: their time to first token,
inter-token latencies, prompt and generated tokens, and their HTTP status; the running/waiting
gauges and KV usage come from the profile as the engine's stats would. A share of the requests
(`error_share`) fails, alternately as a 500 response and as a stream aborted after its 200 header,
which is how the runtime records the two (berth:http_requests_total, vllm:request_success_total).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from berth_runtime.engine.outputs import EngineStats
from berth_runtime.server.metrics import ServerMetrics

TICK_SECONDS = 0.1


@dataclass(frozen=True)
class LoadProfile:
    """The load one replica reports. Written by tests with `write_profile`."""

    requests_per_second: float = 2.0
    ttft_seconds: float = 0.1
    itl_seconds: float = 0.02
    prompt_tokens: int = 200
    output_tokens: int = 40
    running: int = 2
    waiting: int = 0
    kv_cache_usage: float = 0.1
    error_share: float = 0.0
    """Share of the requests that fail, in [0, 1]: alternately a 500 and an aborted stream."""


def write_profile(path: Path, profile: LoadProfile) -> None:
    """Replace the profile atomically, so the exporter never reads half a file."""
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(profile.__dict__))
    staging.replace(path)


def read_profile(path: Path, previous: LoadProfile) -> LoadProfile:
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return previous
    known = {field.name for field in fields(LoadProfile)}
    return LoadProfile(**{key: value for key, value in raw.items() if key in known})


def serve_metrics(port: int, registry: CollectorRegistry) -> None:
    """Serve /metrics exactly as the runtime's app does (generate_latest, CONTENT_TYPE_LATEST), not
    with prometheus_client's content negotiation, which renames `vllm:` series to `vllm_` in
    OpenMetrics output."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = generate_latest(registry)
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def run(port: int, profile_path: Path, model_name: str, stop: threading.Event) -> None:
    profile = read_profile(profile_path, LoadProfile())
    metrics = ServerMetrics(
        model_name,
        lambda: EngineStats(
            num_running=profile.running, num_waiting=profile.waiting, kv_cache_usage=profile.kv_cache_usage
        ),
    )
    serve_metrics(port, metrics.registry)
    owed = 0.0  # fractional requests carried to the next tick
    failures_owed = 0.0  # fractional failed requests carried to the next request
    failures = 0
    while not stop.wait(TICK_SECONDS):
        profile = read_profile(profile_path, profile)
        owed += profile.requests_per_second * TICK_SECONDS
        while owed >= 1.0:
            owed -= 1.0
            failures_owed += profile.error_share
            if failures_owed >= 1.0:
                failures_owed -= 1.0
                failures += 1
                record_failure(metrics, aborted=failures % 2 == 0)
            else:
                record_success(metrics, profile)


def record_success(metrics: ServerMetrics, profile: LoadProfile) -> None:
    metrics.time_to_first_token.observe(profile.ttft_seconds)
    for _ in range(profile.output_tokens - 1):
        metrics.inter_token_latency.observe(profile.itl_seconds)
    metrics.prompt_tokens.inc(profile.prompt_tokens)
    metrics.generation_tokens.inc(profile.output_tokens)
    metrics.request_finished("stop")
    metrics.http_request_done("openai", 200)


def record_failure(metrics: ServerMetrics, aborted: bool) -> None:
    """A 500 before any output (the engine refused the request), or a stream that began with 200
    and was aborted (the engine failed mid-way, or the client went away)."""
    if aborted:
        metrics.request_finished("abort")
        metrics.http_request_done("openai", 200)
    else:
        metrics.http_request_done("openai", 500)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--model-name", default="chat")
    arguments = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run(arguments.port, arguments.profile, arguments.model_name, stop)


if __name__ == "__main__":
    main()
