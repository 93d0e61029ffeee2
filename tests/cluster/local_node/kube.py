"""The agent's only door to the API server: plain-dict requests and watches over the official client.

Why the synchronous ``kubernetes`` client in threads: it is already a dependency and does the
security-relevant parts (kubeconfig, client certificates, TLS) right; the agent's request rate is
a few per second. Bodies stay plain dicts (the manifests' own shapes, no generated model classes),
as in berth's operator (``berth_operator.kube.transport``), and one urllib3 pool is shared by the
watch, heartbeat, pod-worker and probe threads (urllib3 pools are thread-safe).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.watch.watch import iter_resp_lines

REQUEST_TIMEOUT_SECONDS = 30.0
WATCH_SECONDS = 60
"""How long one watch request runs before the server ends it and the agent re-watches."""


class KubeError(RuntimeError):
    """The API server answered non-2xx (``status``), or could not be reached (status 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Kube:
    """Requests against the cluster of ``kubeconfig``; every method may raise KubeError."""

    def __init__(self, kubeconfig: Path, max_connections: int = 32) -> None:
        configuration = kubernetes.client.Configuration()
        configuration.connection_pool_maxsize = max_connections
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
        self.server: str = configuration.host
        self._client = kubernetes.client.ApiClient(configuration)

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        timeout: Any,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, serialized, _ = self._client.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            return self._client.call_api(
                method, url, header_params=headers, body=serialized, _request_timeout=timeout
            )
        except (urllib3.exceptions.HTTPError, kubernetes.client.exceptions.ApiException, OSError) as error:
            raise KubeError(0, "Unreachable", f"{method} {path}: {error}") from error

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        response = self._send(method, path, query, body, content_type, REQUEST_TIMEOUT_SECONDS)
        data = response.read()
        if not 200 <= response.status < 300:
            raise _error(response.status, data)
        parsed: dict[str, Any] = json.loads(data) if data else {}
        return parsed

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def watch(
        self, path: str, query: list[tuple[str, str]], resource_version: str
    ) -> Iterator[dict[str, Any]]:
        """Events after ``resource_version`` (bookmarks included) until the server ends the watch;
        raises WatchExpired on 410."""
        full_query = [
            *query,
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        response = self._send("GET", path, full_query, None, "", (10.0, WATCH_SECONDS + 30.0))
        try:
            if response.status == 410:
                raise WatchExpired(path)
            if not 200 <= response.status < 300:
                raise _error(response.status, response.read())
            for line in iter_resp_lines(response.response):  # type: ignore[no-untyped-call]
                if not line:
                    continue
                event: dict[str, Any] = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    if status.get("code") == 410:
                        raise WatchExpired(status.get("message", path))
                    raise KubeError(
                        int(status.get("code", 0)), status.get("reason", ""), status.get("message", "")
                    )
                yield event
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeError(0, "Unreachable", f"watch {path}: {error}") from error
        finally:
            response.response.close()  # an unfinished stream must not go back to the pool
            response.response.release_conn()


def _error(status: int, data: bytes) -> KubeError:
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    return KubeError(status, str(body.get("reason", "")), str(body.get("message", data[:200])))
