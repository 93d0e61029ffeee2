"""A local stand-in for kube-proxy: berth's Services answer on 127.0.0.1.

Why: the local control plane has no kube-proxy and no cluster network, so a client outside the
cluster (a test, the demo, the OpenAI SDK) cannot reach a berth Service. This process watches every
Service labelled ``app.kubernetes.io/managed-by=berth`` (all namespaces) and their EndpointSlices,
opens one listening port on 127.0.0.1 per Service port, and forwards each TCP connection to one of
the Service's ready endpoints in turn (tests/cluster/service_routes.py has the rules; forwarding is
plain bytes, tests/cluster/tcp_splice.py). Slice changes apply to the next connection as soon as
the watch delivers them.

A connection that finds no ready endpoint is reset at once (TCP RST), not answered 503: the proxy
works at layer 4 like kube-proxy, whose REJECT rule gives such a client "connection refused"; the
same port may carry non-HTTP bytes, and a made-up HTTP answer would look to a client's retry logic
like an answer from the runtime.

Each (namespace, Service, port) keeps its address for the life of the proxy, even across a Service
deleted and made again. Addresses are recorded in ``<state-dir>/services.json``
(``{"ns/name": {"http": "127.0.0.1:PORT", ...}}``, Services that exist now) and on the Service as
the annotation ``berth.dev/local-address`` (the ``http`` port, else the first), written with a
merge patch under the field manager ``berth-service-proxy``. The operator tolerates it: a field
another manager adds is not drift (berth_operator/kube/ownership.py). An annotation naming an
address where something else listens (another live proxy) is left alone, so two proxies never
fight; ours are removed when the proxy stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from tests.cluster import processes
from tests.cluster.api_access import from_kubeconfig
from tests.cluster.api_watch import ApiError, KubeClient, list_and_watch
from tests.cluster.service_routes import (
    SERVICE_NAME_LABEL,
    Backend,
    RoundRobin,
    ServicePort,
    ready_backends,
    service_ports,
)
from tests.cluster.tcp_splice import reset, splice

log = logging.getLogger("service-proxy")

ANNOTATION = "berth.dev/local-address"
FIELD_MANAGER = "berth-service-proxy"
SERVICES_FILE = "services.json"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=berth"
HOST = "127.0.0.1"
CONNECT_TIMEOUT_SECONDS = 2.0
"""How long one endpoint may take to accept a connection before the next one is tried."""
CONNECT_ATTEMPTS = 3
"""Endpoints tried per connection (the one whose turn it is, then the next ones)."""
START_TIMEOUT_SECONDS = 60.0
SHUTDOWN_SECONDS = 3.0
"""Time given to removing our annotations when stopping (the API server may already be gone)."""
REPO_ROOT = Path(__file__).resolve().parents[2]

ServiceKey = tuple[str, str]  # namespace, name
ListenerKey = tuple[str, str, str]  # namespace, name, port key (name, else number)


def _key(obj: dict[str, Any]) -> ServiceKey:
    metadata = obj["metadata"]
    return str(metadata.get("namespace", "")), str(metadata["name"])


def annotated_port(ports: list[ServicePort]) -> ServicePort | None:
    """The port the annotation names: the one called ``http`` (berth's API), else the first."""
    return next((port for port in ports if port.name == "http"), ports[0] if ports else None)


def address_table(
    services: dict[ServiceKey, dict[str, Any]], listening: dict[ListenerKey, int]
) -> dict[str, dict[str, str]]:
    """services.json: each existing Service's ports that have a listener, by port key."""
    table: dict[str, dict[str, str]] = {}
    for (namespace, name), service in sorted(services.items()):
        ports = {
            port.key: f"{HOST}:{listening[(namespace, name, port.key)]}"
            for port in service_ports(service)
            if (namespace, name, port.key) in listening
        }
        if ports:
            table[f"{namespace}/{name}"] = ports
    return table


def _listens(address: str) -> bool:
    """Whether something accepts connections at ``host:port`` (an instant answer on loopback)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


class ServiceProxy:
    """The proxy's state, kept in step by two watches, and its listeners."""

    def __init__(self, client: KubeClient, state_dir: Path) -> None:
        self._client = client
        self._services_file = state_dir / SERVICES_FILE
        self._services: dict[ServiceKey, dict[str, Any]] = {}
        self._slices: dict[ServiceKey, dict[str, dict[str, Any]]] = {}
        self._servers: dict[ListenerKey, asyncio.Server] = {}
        self._listening: dict[ListenerKey, int] = {}
        self._turns: dict[ListenerKey, RoundRobin] = {}
        self._annotating: set[ServiceKey] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[Any]] = set()
        self._services_listed = asyncio.Event()
        self._slices_listed = asyncio.Event()
        self._written: dict[str, dict[str, str]] | None = None

    # ---- what the watches deliver
    async def reset_services(self, items: list[dict[str, Any]]) -> None:
        self._services = {_key(item): item for item in items}
        self._services_listed.set()
        await self._services_changed(list(self._services))

    async def service_changed(self, event_type: str, service: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self._services.pop(_key(service), None)
        else:
            self._services[_key(service)] = service
        await self._services_changed([_key(service)])

    async def reset_slices(self, items: list[dict[str, Any]]) -> None:
        self._slices = {}
        for item in items:
            self._store_slice(item)
        self._slices_listed.set()
        self._write_table()

    async def slice_changed(self, event_type: str, endpoint_slice: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self._slices.get(self._slice_owner(endpoint_slice), {}).pop(
                endpoint_slice["metadata"]["name"], None
            )
        else:
            self._store_slice(endpoint_slice)

    def _slice_owner(self, endpoint_slice: dict[str, Any]) -> ServiceKey:
        metadata = endpoint_slice["metadata"]
        return str(metadata.get("namespace", "")), str(metadata.get("labels", {}).get(SERVICE_NAME_LABEL, ""))

    def _store_slice(self, endpoint_slice: dict[str, Any]) -> None:
        owner, name = self._slice_owner(endpoint_slice), endpoint_slice["metadata"]["name"]
        for service_key, slices in self._slices.items():  # its service-name label may have changed
            if service_key[0] == owner[0] and service_key != owner:
                slices.pop(name, None)
        self._slices.setdefault(owner, {})[name] = endpoint_slice

    # ---- listeners, the address table and the annotation
    async def _services_changed(self, changed: list[ServiceKey]) -> None:
        for service_key in changed:
            for port in service_ports(self._services.get(service_key, {})):
                key = (*service_key, port.key)
                if key not in self._servers:
                    await self._listen(key)
        self._write_table()
        for service_key in changed:
            if service_key in self._services:
                self._annotate_if_needed(service_key, self._services[service_key])

    async def _listen(self, key: ListenerKey) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(key, reader, writer)

        server = await asyncio.start_server(accept, HOST, 0)
        self._servers[key] = server
        self._listening[key] = int(server.sockets[0].getsockname()[1])
        self._turns[key] = RoundRobin()
        log.info("%s/%s port %s listens on %s:%d", *key, HOST, self._listening[key])

    def address(self, namespace: str, name: str, port_key: str) -> str | None:
        """Where the proxy listens for one Service port (None before the Service was seen)."""
        port = self._listening.get((namespace, name, port_key))
        return None if port is None else f"{HOST}:{port}"

    def backends(self, key: ListenerKey) -> list[Backend]:
        """The ready endpoints a connection to listener ``key`` may go to right now."""
        namespace, name, port_key = key
        service = self._services.get((namespace, name))
        port = next((p for p in service_ports(service) if p.key == port_key), None) if service else None
        if port is None:
            return []
        return ready_backends(port, self._slices.get((namespace, name), {}).values())

    def _write_table(self) -> None:
        if not (self._services_listed.is_set() and self._slices_listed.is_set()):
            return
        table = address_table(self._services, self._listening)
        if table == self._written:
            return
        temporary = self._services_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self._services_file)
        self._written = table

    def _own_address(self, service_key: ServiceKey, service: dict[str, Any]) -> str | None:
        port = annotated_port(service_ports(service))
        return self.address(*service_key, port.key) if port else None

    def _annotate_if_needed(self, service_key: ServiceKey, service: dict[str, Any]) -> None:
        wanted = self._own_address(service_key, service)
        current = (service["metadata"].get("annotations") or {}).get(ANNOTATION)
        if wanted is None or current == wanted or service_key in self._annotating:
            return
        self._annotating.add(service_key)
        self._spawn(self._annotate(service_key, wanted, current))

    async def _annotate(self, service_key: ServiceKey, wanted: str, current: str | None) -> None:
        ours = {f"{HOST}:{port}" for port in self._listening.values()}
        try:
            # An address that answers and is not one of ours belongs to another live proxy; one that
            # is ours (a port reused from a proxy that ran before) or dead is stale.
            if current and current not in ours and await asyncio.to_thread(_listens, current):
                log.warning(
                    "%s/%s: %s=%s answers (another proxy?); left alone", *service_key, ANNOTATION, current
                )
                return
            await self._patch_annotation(service_key, wanted)
        except (ApiError, OSError) as error:
            log.warning("%s/%s: could not annotate: %s", *service_key, error)
        finally:
            self._annotating.discard(service_key)

    async def _patch_annotation(self, service_key: ServiceKey, value: str | None) -> None:
        namespace, name = service_key
        patch = {"metadata": {"annotations": {ANNOTATION: value}}}
        await self._client.merge_patch(
            f"/api/v1/namespaces/{namespace}/services/{name}", patch, FIELD_MANAGER
        )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- connections
    async def _forward(
        self, key: ListenerKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:  # so stopping the proxy ends open connections too
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        candidates = self._turns[key].order(self.backends(key))[:CONNECT_ATTEMPTS]
        for backend in candidates:
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(backend.address, backend.port), CONNECT_TIMEOUT_SECONDS
                )
            except (OSError, TimeoutError) as error:
                log.warning("%s/%s %s: endpoint %s refused (%s)", *key, backend, error or "timeout")
                continue
            await splice((reader, writer), upstream)
            return
        why = "no ready endpoint answered" if candidates else "no ready endpoint"
        log.info("%s/%s %s: %s; connection reset", *key, why)
        reset(writer)

    # ---- life cycle
    async def run(self, stop: asyncio.Event) -> None:
        watches = [
            asyncio.ensure_future(
                list_and_watch(
                    self._client,
                    "/api/v1/services",
                    MANAGED_SELECTOR,
                    self.reset_services,
                    self.service_changed,
                )
            ),
            asyncio.ensure_future(
                list_and_watch(
                    self._client,
                    "/apis/discovery.k8s.io/v1/endpointslices",
                    SERVICE_NAME_LABEL,  # every slice that belongs to a Service; ours picked by name
                    self.reset_slices,
                    self.slice_changed,
                )
            ),
        ]
        try:
            await stop.wait()
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
            await self.close()
            await self.remove_own_annotations()
            self._services_file.unlink(missing_ok=True)

    async def close(self) -> None:
        """Stops listening and ends every open connection and background write."""
        running = [*self._background, *self._connections]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for server in self._servers.values():
            server.close()

    async def remove_own_annotations(self) -> None:
        """Takes our address off every Service that still names it (best effort, bounded in time):
        once the proxy stops, nothing answers there."""
        ours = [
            key
            for key, service in self._services.items()
            if (service["metadata"].get("annotations") or {}).get(ANNOTATION)
            == self._own_address(key, service)
        ]
        with contextlib.suppress(TimeoutError, ApiError, OSError):
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                for key in ours:
                    await self._patch_annotation(key, None)


async def _main(kubeconfig: Path, state_dir: Path) -> None:
    client = KubeClient(from_kubeconfig(kubeconfig, state_dir / "service-proxy-secrets"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await ServiceProxy(client, state_dir).run(stop)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.service_proxy", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help=f"where {SERVICES_FILE} is written")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per watch request
    args.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_main(args.kubeconfig.resolve(), args.state_dir.resolve()))
    return 0


def start_service_proxy(kubeconfig: Path, state_dir: Path, log_path: Path) -> int:
    """Starts the proxy detached (processes.start, like the control plane) and returns its PID once
    it has listed the cluster and written ``<state_dir>/services.json``. Stop it with
    ``processes.stop(pid, str(state_dir))``. ``log_path`` must end in ``.log``."""
    if log_path.suffix != ".log":
        raise ValueError(f"log_path: {str(log_path)!r} must end in .log (processes.start names it so)")
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    services_file = state_dir / SERVICES_FILE
    services_file.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tests.cluster.service_proxy",
        f"--kubeconfig={kubeconfig.resolve()}",
        f"--state-dir={state_dir}",
    ]
    name, log_dir = log_path.stem, log_path.parent
    pid = processes.start(name, argv, log_dir, REPO_ROOT)
    try:
        processes.wait_until(services_file.is_file, START_TIMEOUT_SECONDS, SERVICES_FILE, pid, log_dir, name)
    except BaseException:
        processes.stop(pid, str(state_dir))
        raise
    return pid


if __name__ == "__main__":
    sys.exit(main())
