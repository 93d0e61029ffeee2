"""moto's S3 server on 127.0.0.1 behind a WSGI layer that records every request (and can slow object
downloads), so the cache tests can count what was really downloaded, across processes too."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class CountingS3:
    """The endpoint and every (method, path) it was asked, in order."""

    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    object_delay_seconds: float = 0.0
    """Each GET of an object (not a listing) waits this long before it is answered."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def object_gets(self, bucket: str) -> Counter[str]:
        """How often each object key of `bucket` was downloaded (GET /bucket/key)."""
        prefix = f"/{bucket}/"
        with self._lock:
            return Counter(
                path.removeprefix(prefix)
                for method, path in self.requests
                if method == "GET" and path.startswith(prefix) and len(path) > len(prefix)
            )

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            with self._lock:
                self.requests.append((method, path))
            if method == "GET" and path.count("/") >= 2 and self.object_delay_seconds:
                time.sleep(self.object_delay_seconds)
            return app(environ, start_response)

        return counted


@contextmanager
def counting_s3_server() -> Iterator[CountingS3]:
    counting = CountingS3()
    app = counting.wrap(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    counting.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield counting
    finally:
        server.shutdown()
        thread.join()


def upload_model(endpoint: str, bucket: str, prefix: str, model_dir: Path) -> dict[str, bytes]:
    """Put every file of `model_dir` under `prefix`; returns the uploaded content by file name."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if bucket not in [existing["Name"] for existing in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=bucket)
    uploaded = {}
    for path in sorted(model_dir.iterdir()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.name}")
        uploaded[path.name] = path.read_bytes()
    return uploaded
