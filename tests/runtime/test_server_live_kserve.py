"""KServe v2 on the live server through `tritonclient.http`, as a production client would use it:
health and metadata, binary and JSON tensors, batches, statistics, generate and its stream, and
every refusal's status and JSON message. The server fixture is in live_api_fixtures.py."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
import tritonclient.http as httpclient
from live_api import LONG_TEXT, PROMPT, as_text, auth, text_inputs
from live_server import LiveServer
from tritonclient.utils import InferenceServerException

pytest_plugins = ["live_api_fixtures"]


def test_tritonclient_health_and_metadata(
    server: LiveServer, triton: httpclient.InferenceServerClient
) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("tiny", headers=auth())
    metadata = triton.get_model_metadata("tiny", headers=auth())
    assert metadata["name"] == "tiny" and metadata["versions"] == ["1"]
    assert {"name": "text_input", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
    assert metadata["outputs"] == [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}]
    assert "binary_tensor_data" in triton.get_server_metadata(headers=auth())["extensions"]
    assert triton.get_model_repository_index(headers=auth()) == [
        {"name": "tiny", "version": "1", "state": "READY"}
    ]
    assert triton.get_model_config("tiny", headers=auth())["input"][0]["name"] == "text_input"


def test_tritonclient_infer_text_binary_and_json_agree_with_openai(
    triton: httpclient.InferenceServerClient, oai: openai.OpenAI
) -> None:
    parameters = {"temperature": 0, "ignore_eos": True}
    binary = triton.infer("tiny", text_inputs([PROMPT], 8), parameters=parameters, headers=auth())
    assert binary.get_response()["outputs"][0]["parameters"]["binary_data_size"] > 0, (
        "binary output by default"
    )
    binary_text = as_text(binary.as_numpy("text_output")[0])
    outputs = [httpclient.InferRequestedOutput("text_output", binary_data=False)]
    json_result = triton.infer(
        "tiny", text_inputs([PROMPT], 8, binary=False), outputs=outputs, parameters=parameters, headers=auth()
    )
    assert "data" in json_result.get_response()["outputs"][0]
    assert as_text(json_result.as_numpy("text_output")[0]) == binary_text
    completion = oai.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
    )
    assert completion.choices[0].text == binary_text
    assert completion.usage is not None and completion.usage.completion_tokens == 8


def test_tritonclient_batch_of_prompts_returns_one_text_each(
    triton: httpclient.InferenceServerClient,
) -> None:
    prompts = [PROMPT, "Kubernetes schedules pods", PROMPT]
    result = triton.infer("tiny", text_inputs(prompts, 5), parameters={"temperature": 0}, headers=auth())
    texts = [as_text(value) for value in result.as_numpy("text_output")]
    assert len(texts) == 3 and texts[0] == texts[2]


def test_tritonclient_statistics_count_inferences(triton: httpclient.InferenceServerClient) -> None:
    before = triton.get_inference_statistics("tiny", headers=auth())["model_stats"][0]["inference_count"]
    triton.infer("tiny", text_inputs([PROMPT], 2), headers=auth())
    after = triton.get_inference_statistics("tiny", headers=auth())["model_stats"][0]
    assert after["inference_count"] == before + 1
    assert after["inference_stats"]["success"]["ns"] > 0


def test_triton_generate_and_generate_stream(server: LiveServer) -> None:
    body = {"text_input": PROMPT, "parameters": {"max_tokens": 6, "temperature": 0, "ignore_eos": True}}
    reply = httpx.post(f"{server.url}/v2/models/tiny/generate", json=body, headers=auth(), timeout=60)
    assert reply.status_code == 200 and reply.json()["model_name"] == "tiny"
    events = []
    with httpx.stream(
        "POST", f"{server.url}/v2/models/tiny/generate_stream", json=body, headers=auth(), timeout=60
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) >= 2
    streamed = "".join(httpx.Response(200, content=event).json()["text_output"] for event in events)
    assert streamed == reply.json()["text_output"]


def test_tritonclient_errors_carry_the_message(triton: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="model 'nope' does not exist"):
        triton.infer("nope", text_inputs([PROMPT], 2), headers=auth())
    with pytest.raises(InferenceServerException, match="invalid value for 'top_p': 5"):
        triton.infer("tiny", text_inputs([PROMPT], 2), parameters={"top_p": 5}, headers=auth())
    with pytest.raises(InferenceServerException, match="unknown parameter 'temprature'"):
        triton.infer("tiny", text_inputs([PROMPT], 2), parameters={"temprature": 0.5}, headers=auth())


def infer_body(name: str = "text_input", shape: int = 1, text: str = "x") -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [shape], "data": [text]}]}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", infer_body(), 404, "model 'nope' does not exist"),
        ("/v2/models/tiny/infer", infer_body(name="prompt"), 400, "unknown input 'prompt'"),
        ("/v2/models/tiny/infer", infer_body(shape=2), 400, "needs 2 element(s)"),
        ("/v2/models/tiny/infer", infer_body(text=LONG_TEXT), 400, "max_model_len"),
        ("/v2/models/tiny/generate", {"text_input": "x", "max_tokens": 0}, 400, "'max_tokens'"),
        ("/v2/models/tiny/generate", {"text_input": 5}, 400, "'text_input' must be a string"),
    ],
)
def test_kserve_errors_are_json_with_status(
    server: LiveServer, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body, headers=auth(), timeout=60)
    assert response.status_code == status
    assert message in response.json()["error"]
