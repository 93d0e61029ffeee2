"""`ClientKubeApi`: the KubeApi on a real API server.

Why the synchronous `kubernetes` client, run in worker threads, rather than an async client:
kubernetes_asyncio is not a dependency, and the official client already does the hard,
security-relevant part right -- kubeconfig and in-cluster loading, client certificates, exec and OIDC
credential plugins, token refresh, TLS server names, proxies. Each call is one short request, so a
worker thread per in-flight call keeps the event loop free at a cost that does not matter at an
operator's request rate. The threads are berth's own pool, sized with the HTTP connection pool
(BERTH_API_CONCURRENCY), not asyncio's default executor: that one has min(32, CPUs + 4) threads, six
on a 2-core node, and a burst of new resources queued behind it. Bodies stay plain dicts (no
generated model classes), which is also what server-side apply (`application/apply-patch+yaml`; JSON
is valid YAML) wants.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import urllib3

from berth_operator.kube.api import FIELD_MANAGER
from berth_operator.kube.errors import KubeApiError, NotFound
from berth_operator.kube.kinds import ResourceKind, kind_of

REQUEST_TIMEOUT_SECONDS = 30.0


def load_api_client(max_connections: int) -> Any:
    """An ApiClient for the cluster the operator runs in, else the current kubeconfig context, keeping
    up to ``max_connections`` connections open (one per worker thread of ClientKubeApi)."""
    configuration = kubernetes.client.Configuration()
    configuration.connection_pool_maxsize = max_connections
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


class ClientKubeApi:
    """KubeApi over the official client's HTTP machinery, one worker thread per call in flight, at
    most ``max_concurrent_requests`` at once (the rest wait their turn)."""

    def __init__(self, api_client: Any, max_concurrent_requests: int) -> None:
        self._client = api_client
        self._workers = ThreadPoolExecutor(max_concurrent_requests, thread_name_prefix="kube-api")

    async def _in_worker(self, *request: Any) -> dict[str, Any]:
        call = functools.partial(contextvars.copy_context().run, self._request, *request)
        return await asyncio.get_running_loop().run_in_executor(self._workers, call)

    def _request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
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
            response = self._client.call_api(
                method, url, header_params=headers, body=serialized, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
            data = response.read()
        except (urllib3.exceptions.HTTPError, kubernetes.client.exceptions.ApiException) as error:
            # Unreachable, timed out, TLS failure: no HTTP status; status 0 marks "try again later".
            raise KubeApiError(0, "Unreachable", f"{method} {path}: {error}") from error
        if not 200 <= response.status < 300:
            raise KubeApiError.from_response(response.status, data or b"")
        parsed: dict[str, Any] = json.loads(data) if data else {}
        return parsed

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._in_worker("GET", kind.object_path(namespace, name))
        except NotFound:
            return None

    async def list(
        self, kind: ResourceKind, namespace: str, label_selector: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        result = await self._in_worker("GET", kind.collection_path(namespace), query)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def apply(
        self, manifest: dict[str, Any], *, subresource: str | None = None, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        metadata = manifest["metadata"]
        path = kind_of(manifest).object_path(metadata["namespace"], metadata["name"], subresource)
        query = [("fieldManager", field_manager), ("force", "true")]
        return await self._in_worker("PATCH", path, query, manifest, "application/apply-patch+yaml")

    async def create(self, kind: ResourceKind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._in_worker("POST", kind.collection_path(namespace), None, body)

    async def delete(self, kind: ResourceKind, namespace: str, name: str) -> None:
        try:
            await self._in_worker("DELETE", kind.object_path(namespace, name))
        except NotFound:
            return

    async def merge_patch(
        self, kind: ResourceKind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        path = kind.object_path(namespace, name)
        return await self._in_worker("PATCH", path, None, patch, "application/merge-patch+json")
