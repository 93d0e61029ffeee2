"""The KServe v2 body codec against what tritonclient really sends and parses, in both directions."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._utils import _get_inference_request

from berth_runtime.server.kserve_codec import (
    InferenceProtocolError,
    Tensor,
    deserialize_bytes_elements,
    encode_infer_response,
    parse_infer_request,
    serialize_bytes_elements,
)


def client_body(
    inputs: list[httpclient.InferInput],
    outputs: list[httpclient.InferRequestedOutput] | None = None,
    parameters: dict[str, object] | None = None,
) -> tuple[bytes, int | None]:
    """The exact body and Inference-Header-Content-Length tritonclient would send."""
    return _get_inference_request(inputs, "req-1", outputs, 0, False, False, 0, None, parameters)  # type: ignore[no-any-return]


def text_input(texts: list[str], binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("text_input", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=binary)
    return tensor


def test_bytes_elements_are_length_prefixed_little_endian() -> None:
    raw = serialize_bytes_elements([b"hi", b"", "é".encode()])
    assert raw == struct.pack("<I", 2) + b"hi" + struct.pack("<I", 0) + struct.pack("<I", 2) + "é".encode()
    assert deserialize_bytes_elements(raw, "x") == [b"hi", b"", "é".encode()]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_text_request_is_decoded(binary: bool) -> None:
    max_tokens = httpclient.InferInput("max_tokens", [1], "INT32")
    max_tokens.set_data_from_numpy(np.array([7], dtype=np.int32), binary_data=binary)
    temperature = httpclient.InferInput("temperature", [1], "FP32")
    temperature.set_data_from_numpy(np.array([0.5], dtype=np.float32), binary_data=binary)
    ignore_eos = httpclient.InferInput("ignore_eos", [1], "BOOL")
    ignore_eos.set_data_from_numpy(np.array([True]), binary_data=binary)
    body, header_length = client_body(
        [text_input(["Hello, wörld 🚀", "second"], binary), max_tokens, temperature, ignore_eos],
        parameters={"top_k": 3},
    )
    assert (header_length is not None) == binary
    request = parse_infer_request(body, header_length)
    assert request.id == "req-1"
    assert request.parameters["top_k"] == 3
    text = request.input("text_input")
    assert text is not None and text.shape == [2]
    assert text.values == ["Hello, wörld 🚀".encode(), b"second"]
    assert request.input("max_tokens").values == [7]  # type: ignore[union-attr]
    assert request.input("temperature").values == [0.5]  # type: ignore[union-attr]
    assert request.input("ignore_eos").values == [True]  # type: ignore[union-attr]


def test_no_requested_outputs_means_binary_outputs() -> None:
    body, header_length = client_body([text_input(["x"], True)])
    assert parse_infer_request(body, header_length).wants_binary("text_output")


@pytest.mark.parametrize("binary", [True, False])
def test_requested_output_binary_flag_is_honoured(binary: bool) -> None:
    outputs = [httpclient.InferRequestedOutput("text_output", binary_data=binary)]
    body, header_length = client_body([text_input(["x"], True)], outputs)
    assert parse_infer_request(body, header_length).wants_binary("text_output") is binary


@pytest.mark.parametrize("binary", [True, False])
def test_response_is_read_by_tritonclient(binary: bool) -> None:
    texts = ["generated ✓", ""]
    count = Tensor("completion_tokens", "INT32", [2], [5, 0])
    body, header_length = encode_infer_response(
        model_name="tiny",
        model_version="1",
        request_id="req-1",
        outputs=[Tensor("text_output", "BYTES", [2], [t.encode() for t in texts]), count],
        binary_outputs={"text_output", "completion_tokens"} if binary else set(),
    )
    assert (header_length is not None) == binary
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    decoded = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("text_output")]
    assert decoded == texts
    assert result.as_numpy("completion_tokens").tolist() == [5, 0]
    response = result.get_response()
    assert response["model_name"] == "tiny" and response["id"] == "req-1"


def test_json_response_has_no_binary_section() -> None:
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs=[Tensor("text_output", "BYTES", [1], [b"ok"])],
        binary_outputs=set(),
    )
    assert header_length is None
    assert json.loads(body)["outputs"][0]["data"] == ["ok"]


def _header(inputs: list[dict[str, object]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[]", None, "must be a JSON object"),
        (b'{"inputs": []}', None, "'inputs' must be a non-empty list"),
        (_header([{"name": "t", "datatype": "BYTES", "shape": [1]}]), None, "neither 'data' nor"),
        (
            _header([{"name": "t", "datatype": "COMPLEX", "shape": [1], "data": [1]}]),
            None,
            "datatype 'COMPLEX'",
        ),
        (
            _header([{"name": "t", "datatype": "BYTES", "shape": [2], "data": ["a"]}]),
            None,
            r"needs 2 element\(s\)",
        ),
        (
            _header([{"name": "t", "datatype": "INT32", "shape": [1], "data": ["a"]}]),
            None,
            "must be integers",
        ),
        (_header([{"name": "t", "datatype": "BYTES", "shape": [-1], "data": ["a"]}]), None, "integers >= 0"),
        (_header([{"name": "t", "datatype": [["BYTES"]], "shape": [1], "data": ["a"]}]), None, "datatype"),
        (b"{}", 100, "Inference-Header-Content-Length is 100"),
        (
            _header(
                [{"name": "t", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 10}}]
            )
            + b"\x05\x00",
            len(
                _header(
                    [{"name": "t", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 10}}]
                )
            ),
            "binary_data_size=10 does not fit",
        ),
        (
            _header([{"name": "t", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}])
            + struct.pack("<I", 9)
            + b"ab",
            len(
                _header(
                    [{"name": "t", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]
                )
            ),
            "claims 9 bytes but only 2 remain",
        ),
        (
            _header([{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}]) + b"extra",
            len(_header([{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}])),
            "carries 5 bytes of binary tensor data",
        ),
        (
            _header(
                [
                    {
                        "name": "t",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"shared_memory_region": "r"},
                    }
                ]
            ),
            None,
            "shared-memory tensors are not supported",
        ),
    ],
)
def test_malformed_requests_are_explained(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(InferenceProtocolError, match=message):
        parse_infer_request(body, header_length)


def test_nested_json_data_is_flattened_in_row_major_order() -> None:
    request = parse_infer_request(
        _header([{"name": "t", "datatype": "BYTES", "shape": [2, 1], "data": [["a"], ["b"]]}]), None
    )
    assert request.inputs[0].values == [b"a", b"b"]
