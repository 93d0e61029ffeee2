"""The small endpoints users script against (issue #17 part 4), live: `GET /v1/models/{id}`,
`POST /tokenize` and `/detokenize` in vLLM's shapes, `GET /version`, and `X-Request-Id` echoed on
every response and generated when absent (that it is in the request log: test_server_heldout_drain.py).
The server fixture is in live_api_fixtures.py."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest
from live_api import PROMPT, auth
from live_server import LiveServer

pytest_plugins = ["live_api_fixtures"]


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client:
        yield client


def test_retrieve_model_through_the_openai_sdk(oai: openai.OpenAI, server: LiveServer) -> None:
    model = oai.models.retrieve(server.model_name)
    assert model.id == server.model_name and model.object == "model" and model.owned_by == "berth"
    assert model.model_extra is not None and model.model_extra["max_model_len"] == 512


def test_retrieve_unknown_model_is_a_404_json_error(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        oai.models.retrieve("no-such-model")
    body = raised.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and "'tiny'" in body["message"]


def test_tokenize_and_detokenize_round_trip(http: httpx.Client) -> None:
    tokenized = http.post("/tokenize", json={"model": "tiny", "prompt": PROMPT, "return_token_strs": True})
    assert tokenized.status_code == 200, tokenized.text
    reply = tokenized.json()
    assert reply["count"] == len(reply["tokens"]) > 1 and reply["max_model_len"] == 512
    assert len(reply["token_strs"]) == reply["count"]
    without_bos = http.post("/tokenize", json={"prompt": PROMPT, "add_special_tokens": False}).json()
    assert without_bos["tokens"] == reply["tokens"][1:] and without_bos["token_strs"] is None
    detokenized = http.post("/detokenize", json={"model": "tiny", "tokens": without_bos["tokens"]})
    assert detokenized.status_code == 200 and detokenized.json() == {"prompt": PROMPT}


def test_tokenize_messages_counts_what_chat_generation_sends(http: httpx.Client, oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    counted = http.post("/tokenize", json={"messages": messages}).json()["count"]
    chat = oai.chat.completions.create(model="tiny", messages=messages, max_tokens=1)  # type: ignore[arg-type]
    assert chat.usage is not None and chat.usage.prompt_tokens == counted


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "prompt"),
        ("/tokenize", {}, "prompt"),
        ("/tokenize", {"prompt": "x", "model": "other"}, "model"),
        ("/detokenize", {"tokens": [10**9]}, "tokens"),
        ("/detokenize", {"tokens": "abc"}, "tokens"),
    ],
)
def test_tokenizer_endpoints_refuse_with_openai_shaped_errors(
    http: httpx.Client, path: str, body: dict[str, object], param: str
) -> None:
    response = http.post(path, json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["param"] == param


def test_version(http: httpx.Client) -> None:
    response = http.get("/version")
    assert response.status_code == 200
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", response.json()["version"])


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v2/health/live"), ("GET", "/v1/models"), ("POST", "/v1/completions"), ("GET", "/nowhere")],
)
def test_request_id_is_echoed_or_generated_on_every_response(
    server: LiveServer, method: str, path: str
) -> None:
    body = {"prompt": PROMPT, "max_tokens": 1}
    echoed = httpx.request(
        method, f"{server.url}{path}", headers={**auth(), "X-Request-Id": "trace-42"}, json=body
    )
    assert echoed.headers["x-request-id"] == "trace-42"
    generated = httpx.request(method, f"{server.url}{path}", headers=auth(), json=body)
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    unauthorized = httpx.request(
        method, f"{server.url}{path}", headers={"X-Request-Id": "bad id\u00e9".encode()}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", unauthorized.headers["x-request-id"]), "an unsafe id is replaced"
