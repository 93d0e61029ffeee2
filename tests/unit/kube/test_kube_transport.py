"""ClientKubeApi against a local HTTP stand-in of the API server: paths, verbs, content types,
field manager, authentication and error mapping are what a real API server expects."""

from __future__ import annotations

import json
import socket
import threading
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


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
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
        yield state, ClientKubeApi(kubernetes.client.ApiClient(configuration))
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
    api = ClientKubeApi(kubernetes.client.ApiClient(configuration))
    with pytest.raises(KubeApiError) as error:
        await api.get(DEPLOYMENT, "ml", "chat")
    assert error.value.status == 0
    assert "GET /apis/apps/v1/namespaces/ml/deployments/chat" in str(error.value)
