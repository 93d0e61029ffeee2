"""Watches a Service's EndpointSlices and remembers the fewest ready endpoints ever seen.

Why: "no moment with zero ready endpoints" during a rollout cannot be proven by polling, which
misses short gaps. A watch receives every write the EndpointSlice controller makes, so the
minimum over all of them is the true minimum the Service ever had.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client, config, watch  # type: ignore[import-untyped]

_WATCH_SECONDS = 5


def _ready_endpoints(endpoint_slice: Any) -> int:
    return sum(
        1 for endpoint in endpoint_slice.endpoints or [] if endpoint.conditions and endpoint.conditions.ready
    )


class ReadyEndpointWatch:
    """Context manager: a background watch on the EndpointSlices of ``service`` in ``namespace``."""

    def __init__(self, kubeconfig: Path, namespace: str, service: str) -> None:
        self._api = client.DiscoveryV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self._namespace = namespace
        self._selector = f"kubernetes.io/service-name={service}"
        self._ready_by_slice: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"endpoint-watch-{service}", daemon=True)
        self._error: BaseException | None = None
        self.lowest_ready_count: int | None = None
        self.changes_seen = 0

    def ready_count(self) -> int:
        with self._lock:
            return sum(self._ready_by_slice.values())

    def _record(self, slice_name: str, ready: int | None) -> None:
        with self._lock:
            before = sum(self._ready_by_slice.values())
            if ready is None:
                self._ready_by_slice.pop(slice_name, None)
            else:
                self._ready_by_slice[slice_name] = ready
            total = sum(self._ready_by_slice.values())
            if total != before:
                self.changes_seen += 1
            self.lowest_ready_count = (
                total if self.lowest_ready_count is None else min(self.lowest_ready_count, total)
            )

    def _run(self) -> None:
        try:
            listed = self._api.list_namespaced_endpoint_slice(self._namespace, label_selector=self._selector)
            for endpoint_slice in listed.items:
                self._record(endpoint_slice.metadata.name, _ready_endpoints(endpoint_slice))
            resource_version = listed.metadata.resource_version
            while not self._stop.is_set():
                stream = watch.Watch().stream(
                    self._api.list_namespaced_endpoint_slice,
                    self._namespace,
                    label_selector=self._selector,
                    resource_version=resource_version,
                    timeout_seconds=_WATCH_SECONDS,
                )
                for event in stream:
                    endpoint_slice = event["object"]
                    resource_version = endpoint_slice.metadata.resource_version
                    deleted = event["type"] == "DELETED"
                    self._record(
                        endpoint_slice.metadata.name, None if deleted else _ready_endpoints(endpoint_slice)
                    )
        except BaseException as error:  # surfaced by __exit__, so the test fails loudly
            self._error = error

    def __enter__(self) -> ReadyEndpointWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=_WATCH_SECONDS + 5)
        if self._error is not None and kind is None:
            raise RuntimeError(f"the EndpointSlice watch failed: {self._error!r}") from self._error
