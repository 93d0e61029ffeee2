"""The live API server the test_server_live_* modules share, loaded by them as a pytest plugin
(`pytest_plugins = ["live_api_fixtures"]`), so one session-scoped server serves all of them.

A live `python -m berth_runtime serve` process on the tiny Llama, driven by the real clients:
`tritonclient.http` (binary tensor data by default) and the `openai` SDK talk to the server as they
would in production. The server runs with an API key, prefix caching and a separate metrics port,
so those paths are live too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import tritonclient.http as httpclient
from live_api import API_KEY
from live_server import LiveServer, free_port


@pytest.fixture(scope="session")
def server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("live")
    (directory / "api-key").write_text(API_KEY + "\n")
    metrics_port = free_port()
    live = LiveServer(
        tiny_llama_dir,
        directory / "server.log",
        "--api-key-file", str(directory / "api-key"),
        "--enable-prefix-caching",
        "--metrics-port", str(metrics_port),
        "--served-model-name", "tiny",
    )  # fmt: skip
    live.model_name = "tiny"
    live.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        live.wait_ready()
        yield live
    finally:
        assert live.stop() == 0, live.log()


@pytest.fixture
def triton(server: LiveServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))


@pytest.fixture
def oai(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
