"""Encoding and decoding of KServe v2 inference bodies, JSON form and binary tensor data extension.

`tritonclient.http` sends and asks for tensors in binary by default: the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw tensors, in the order of the header's
tensors that carry `parameters.binary_data_size`. BYTES tensors are each element as a 4-byte
little-endian length and its bytes. This module is pure (bytes in, values out) so every rule of the
format is unit-tested without a server.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from berth_runtime.server.json_shape import check_json_shape

NUMERIC_DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
ACCEPTED_DATATYPES = "BYTES, " + ", ".join(NUMERIC_DATATYPES)
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"


class InferenceProtocolError(ValueError):
    """The body does not follow the KServe v2 protocol; the message says where (HTTP 400)."""


@dataclass
class Tensor:
    """A decoded tensor: flat values (bytes for BYTES, Python scalars otherwise) and its shape."""

    name: str
    datatype: str
    shape: list[int]
    values: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[RequestedOutput]
    binary_output_default: bool

    def input(self, name: str) -> Tensor | None:
        return next((tensor for tensor in self.inputs if tensor.name == name), None)

    def wants_binary(self, output_name: str) -> bool:
        for requested in self.outputs:
            if requested.name == output_name:
                return requested.binary
        return self.binary_output_default


def serialize_bytes_elements(elements: list[bytes]) -> bytes:
    """BYTES tensor raw form: each element as <uint32 little-endian length><bytes>."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def deserialize_bytes_elements(raw: bytes, tensor_name: str) -> list[bytes]:
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InferenceProtocolError(
                f"input '{tensor_name}': BYTES data ends inside an element's 4-byte length prefix"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InferenceProtocolError(
                f"input '{tensor_name}': a BYTES element claims {length} bytes but only "
                f"{len(raw) - offset} remain"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def parse_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode an inference request body; `header_length` is Inference-Header-Content-Length, if sent."""
    if header_length is None:
        header_bytes, binary = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise InferenceProtocolError(
                f"{HEADER_LENGTH_HEADER} is {header_length} but the body has {len(body)} bytes"
            )
        header_bytes, binary = body[:header_length], body[header_length:]
    try:
        check_json_shape(header_bytes)  # _flatten recurses once per level of `data`
        header = json.loads(header_bytes)
    except (ValueError, UnicodeDecodeError) as error:
        raise InferenceProtocolError(f"the request header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise InferenceProtocolError("the request body must be a JSON object with an 'inputs' list")
    parameters = _object_field(header, "parameters", "request")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InferenceProtocolError("'inputs' must be a non-empty list of tensors")
    inputs: list[Tensor] = []
    offset = 0
    for index, raw_input in enumerate(raw_inputs):
        tensor, offset = _parse_input(raw_input, index, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InferenceProtocolError(
            f"the body carries {len(binary)} bytes of binary tensor data but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferenceProtocolError(f"'id' must be a string, got {request_id!r}")
    return InferRequest(
        id=request_id,
        parameters=parameters,
        inputs=inputs,
        outputs=_parse_requested_outputs(header.get("outputs")),
        binary_output_default=bool(parameters.get("binary_data_output", False)),
    )


def _object_field(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = container.get(key) or {}
    if not isinstance(value, dict):
        raise InferenceProtocolError(f"{where} '{key}' must be a JSON object, got {value!r}")
    return value


def _parse_input(raw: Any, index: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise InferenceProtocolError(f"inputs[{index}] must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InferenceProtocolError(f"inputs[{index}] has no 'name'")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or (datatype != "BYTES" and datatype not in NUMERIC_DATATYPES):
        raise InferenceProtocolError(
            f"input '{name}': datatype {datatype!r} is not supported; accepted: {ACCEPTED_DATATYPES}"
        )
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(isinstance(dim, int) and dim >= 0 for dim in shape):
        raise InferenceProtocolError(
            f"input '{name}': 'shape' must be a list of integers >= 0, got {shape!r}"
        )
    parameters = _object_field(raw, "parameters", f"input '{name}'")
    if "shared_memory_region" in parameters:
        raise InferenceProtocolError(
            f"input '{name}': shared-memory tensors are not supported by this server"
        )
    element_count = math.prod(shape)
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if not isinstance(binary_size, int) or binary_size < 0 or offset + binary_size > len(binary):
            raise InferenceProtocolError(
                f"input '{name}': binary_data_size={binary_size!r} does not fit the {len(binary) - offset} "
                "binary bytes left in the body"
            )
        values = _decode_binary(name, datatype, binary[offset : offset + binary_size])
        offset += binary_size
    else:
        if "data" not in raw:
            raise InferenceProtocolError(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        values = _decode_json_data(name, datatype, raw["data"])
    if len(values) != element_count:
        raise InferenceProtocolError(
            f"input '{name}': shape {shape} needs {element_count} element(s) but {len(values)} were sent"
        )
    return Tensor(name=name, datatype=datatype, shape=shape, values=values, parameters=parameters), offset


def _decode_binary(name: str, datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        return list(deserialize_bytes_elements(raw, name))
    dtype = NUMERIC_DATATYPES[datatype]
    if len(raw) % dtype.itemsize:
        raise InferenceProtocolError(
            f"input '{name}': {len(raw)} bytes is not a whole number of {datatype} elements"
        )
    return list(np.frombuffer(raw, dtype=dtype).tolist())


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [element for item in data for element in _flatten(item)]
    return [data]


def _decode_json_data(name: str, datatype: str, data: Any) -> list[Any]:
    flat = _flatten(data)
    if datatype == "BYTES":
        if not all(isinstance(element, str) for element in flat):
            raise InferenceProtocolError(f"input '{name}': BYTES data in JSON must be strings")
        return [element.encode("utf-8") for element in flat]
    if datatype == "BOOL":
        if not all(isinstance(element, bool) for element in flat):
            raise InferenceProtocolError(f"input '{name}': BOOL data must be true or false")
        return flat
    is_integer = datatype.startswith(("INT", "UINT"))
    for element in flat:
        valid = isinstance(element, int) if is_integer else isinstance(element, int | float)
        if not valid or isinstance(element, bool):
            kind = "integers" if is_integer else "numbers"
            raise InferenceProtocolError(f"input '{name}': {datatype} data must be {kind}, got {element!r}")
    return flat


def _parse_requested_outputs(raw: Any) -> list[RequestedOutput]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InferenceProtocolError("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InferenceProtocolError(f"outputs[{index}] must be an object with a 'name'")
        parameters = _object_field(item, "parameters", f"output '{item['name']}'")
        if "shared_memory_region" in parameters:
            raise InferenceProtocolError(f"output '{item['name']}': shared-memory tensors are not supported")
        requested.append(
            RequestedOutput(name=item["name"], binary=bool(parameters.get("binary_data", False)))
        )
    return requested


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[Tensor],
    binary_outputs: set[str],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when any output travels in binary, the JSON header's length."""
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        header["id"] = request_id
    if parameters:
        header["parameters"] = parameters
    binary_chunks: list[bytes] = []
    header_outputs: list[dict[str, Any]] = []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.name in binary_outputs:
            raw = _encode_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary_chunks.append(raw)
        else:
            entry["data"] = _encode_json_data(tensor)
        header_outputs.append(entry)
    header["outputs"] = header_outputs
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if not binary_chunks:
        return header_bytes, None
    return header_bytes + b"".join(binary_chunks), len(header_bytes)


def _encode_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return serialize_bytes_elements([_as_bytes(value) for value in tensor.values])
    return np.asarray(tensor.values, dtype=NUMERIC_DATATYPES[tensor.datatype]).tobytes()


def _encode_json_data(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return [_as_bytes(value).decode("utf-8", errors="replace") for value in tensor.values]
    return list(tensor.values)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
