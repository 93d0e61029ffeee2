"""ClientKubeApi against a local HTTP stand-in of the API server: paths, verbs, content types,
field manager, authentication and error mapping are what a real API server expects."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes
import pytest

from berth_operator.kube import Conflict, Forbidden, KubeApiError
from berth_operator.kube.kinds import DEPLOYMENT, EVENT, INFERENCE_DEPLOYMENT, POD
from berth_operator.kube.transport import ClientKubeApi

MAX_CONCURRENT_REQUESTS = 3


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class StandIn:
    """Answers from `responses` keyed by (method, path); records every request."""

    responses: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    answer_delay_seconds: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            with stand_in.lock:
                stand_in.in_flight += 1
                stand_in.most_in_flight = max(stand_in.most_in_flight, stand_in.in_flight)
            try:
                time.sleep(stand_in.answer_delay_seconds)
                self._record_and_reply()
            finally:
                with stand_in.lock:
                    stand_in.in_flight -= 1

        def _record_and_reply(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            stand_in.requests.append(
                Recorded(
                    self.command,
                    url.path,
                    parse_qs(url.query),
                    {key.lower(): value for key, value in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            status, body = stand_in.responses.get((self.command, url.path), (404, {"reason": "NotFound"}))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, ClientKubeApi]]:
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    configuration.api_key = {"authorization": "Bearer t0ken"}
    try:
        yield state, ClientKubeApi(kubernetes.client.ApiClient(configuration), MAX_CONCURRENT_REQUESTS)
    finally:
        server.shutdown()
        server.server_close()


async def test_get_returns_the_object_or_none(stand_in: tuple[StandIn, ClientKubeApi]) -> None:
    state, api = stand_in
    state.responses["GET", "/apis/apps/v1/namespaces/ml/deployments/chat"] = (
        200,
        {"metadata": {"name": "chat"}},
    )
    assert await api.get(DEPLOYMENT, "ml", "chat") == {"metadata": {"name": "chat"}}
    assert await api.get(DEPLOYMENT, "ml", "missing") is None
    assert state.requests[0].headers["authorization"] == "Bearer t0ken"


async def test_list_sends_the_label_selector(stand_in: tuple[StandIn, ClientKubeApi]) -> None:
    state, api = stand_in
    state.responses["GET", "/api/v1/namespaces/ml/pods"] = (200, {"items": [{"metadata": {"name": "p"}}]})
    assert await api.list(POD, "ml", "app.kubernetes.io/instance=chat") == [{"metadata": {"name": "p"}}]
    assert state.requests[0].query["labelSelector"] == ["app.kubernetes.io/instance=chat"]


async def test_list_sends_a_field_selector_only_when_given(stand_in: tuple[StandIn, ClientKubeApi]) -> None:
    state, api = stand_in
    state.responses["GET", "/api/v1/namespaces/ml/events"] = (200, {"items": [{"reason": "FailedMount"}]})
    selector = "involvedObject.kind=Pod,involvedObject.name=chat-1"
    assert await api.list(EVENT, "ml", "", field_selector=selector) == [{"reason": "FailedMount"}]
    assert state.requests[0].query["fieldSelector"] == [selector]
    await api.list(EVENT, "ml", "")
    assert "fieldSelector" not in state.requests[1].query


async def test_apply_is_a_forced_server_side_apply_by_berth_operator(
    stand_in: tuple[StandIn, ClientKubeApi],
) -> None:
    state, api = stand_in
    path = "/apis/berth.dev/v1alpha1/namespaces/ml/inferencedeployments/chat/status"
    state.responses["PATCH", path] = (200, {"status": {"phase": "Ready"}})
    manifest = {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": "chat", "namespace": "ml"},
        "status": {"phase": "Ready"},
    }
    await api.apply(manifest, subresource="status", field_manager="berth-autoscaler")
    (request,) = state.requests
    assert (request.method, request.path) == ("PATCH", path)
    assert request.headers["content-type"] == "application/apply-patch+yaml"
    assert request.query == {"fieldManager": ["berth-autoscaler"], "force": ["true"]}
    assert request.body == manifest


async def test_create_posts_to_the_collection(stand_in: tuple[StandIn, ClientKubeApi]) -> None:
    state, api = stand_in
    state.responses["POST", "/api/v1/namespaces/ml/events"] = (201, {"metadata": {"name": "e1"}})
    assert await api.create(EVENT, "ml", {"reason": "Ready"}) == {"metadata": {"name": "e1"}}
    assert state.requests[0].headers["content-type"] == "application/json"


async def test_requests_beyond_the_concurrency_bound_wait_their_turn(
    stand_in: tuple[StandIn, ClientKubeApi],
) -> None:
    state, api = stand_in
    state.answer_delay_seconds = 0.2
    names = [f"chat-{index}" for index in range(3 * MAX_CONCURRENT_REQUESTS)]
    for name in names:
        state.responses["GET", f"/apis/apps/v1/namespaces/ml/deployments/{name}"] = (200, {"name": name})
    answers = await asyncio.gather(*(api.get(DEPLOYMENT, "ml", name) for name in names))
    assert answers == [{"name": name} for name in names]
    assert state.most_in_flight == MAX_CONCURRENT_REQUESTS


@pytest.mark.parametrize(("status", "error"), [(403, Forbidden), (409, Conflict), (500, KubeApiError)])
async def test_errors_map_to_exceptions(
    stand_in: tuple[StandIn, ClientKubeApi], status: int, error: type[Exception]
) -> None:
    state, api = stand_in
    path = "/apis/berth.dev/v1alpha1/namespaces/ml/inferencedeployments/chat"
    state.responses["GET", path] = (status, {"reason": "Nope", "message": "not today"})
    with pytest.raises(error, match="not today"):
        await api.get(INFERENCE_DEPLOYMENT, "ml", "chat")


async def test_an_unreachable_api_server_is_an_api_error_without_status() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    api = ClientKubeApi(kubernetes.client.ApiClient(configuration), MAX_CONCURRENT_REQUESTS)
    with pytest.raises(KubeApiError) as error:
        await api.get(DEPLOYMENT, "ml", "chat")
    assert error.value.status == 0
    assert "GET /apis/apps/v1/namespaces/ml/deployments/chat" in str(error.value)
