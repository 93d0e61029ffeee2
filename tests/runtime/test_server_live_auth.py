"""The live server's API key: the inference APIs refuse requests without the right key (in each
API's error shape), while health and /metrics stay open. The server fixture is in
live_api_fixtures.py."""

from __future__ import annotations

import httpx
import openai
import pytest
from live_api import API_KEY
from live_server import LiveServer

pytest_plugins = ["live_api_fixtures"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}])
def test_requests_without_the_right_key_get_401(server: LiveServer, headers: dict[str, str]) -> None:
    for path, api_shape in (("/v1/models", dict), ("/v2/models/tiny", str)):
        response = httpx.get(f"{server.url}{path}", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert isinstance(error, api_shape)
        assert "API key" in (error["message"] if isinstance(error, dict) else error)


def test_health_and_metrics_stay_open_without_a_key(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def test_openai_sdk_with_a_wrong_key_raises_authentication_error(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
