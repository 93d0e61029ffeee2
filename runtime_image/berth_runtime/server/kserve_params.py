"""Generation settings of KServe v2 / Triton requests: from request parameters and optional inputs.

Triton clients pass generation settings three ways, and all are accepted: request-level
`parameters` (`tritonclient`'s `parameters=`), extra input tensors (`max_tokens` as INT32 [1], as
TensorRT-LLM ensembles do) and a `sampling_parameters` JSON string (Triton's vLLM backend).
Unknown names are refused with a 400 that lists the accepted ones, so a typo never silently
generates with defaults. The penalties, `min_p` and `logit_bias` take the OpenAI / vLLM names;
`logit_bias` is a JSON object of token id to bias, given as such inside `sampling_parameters` or a
generate body, or as its JSON text where only scalars fit (request parameters, a BYTES input).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from berth_runtime.server.errors import ApiError

TEXT_INPUT = "text_input"
TEXT_OUTPUT = "text_output"

#: Generation settings: name -> (KServe datatype, shape) as model metadata reports them.
GENERATION_INPUTS: dict[str, tuple[str, list[int]]] = {
    "max_tokens": ("INT32", [1]),
    "temperature": ("FP32", [1]),
    "top_k": ("INT32", [1]),
    "top_p": ("FP32", [1]),
    "seed": ("INT64", [1]),
    "stop": ("BYTES", [-1]),
    "stop_token_ids": ("INT32", [-1]),
    "ignore_eos": ("BOOL", [1]),
    "min_tokens": ("INT32", [1]),
    "presence_penalty": ("FP32", [1]),
    "frequency_penalty": ("FP32", [1]),
    "repetition_penalty": ("FP32", [1]),
    "min_p": ("FP32", [1]),
    "logit_bias": ("BYTES", [1]),
    "exclude_input_in_output": ("BOOL", [1]),
    "sampling_parameters": ("BYTES", [1]),
}
_LIST_SETTINGS = {"stop", "stop_token_ids"}
_FLOAT_SETTINGS = {
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "min_p",
}
SAMPLING_NAMES = frozenset(GENERATION_INPUTS) - {"exclude_input_in_output", "sampling_parameters"}
#: Request parameters that Triton clients set for the protocol itself; they do not change generation.
PROTOCOL_PARAMETERS = frozenset(
    {"binary_data_output", "priority", "timeout", "sequence_id", "sequence_start", "sequence_end", "stream"}
)


@dataclass
class GenerationSettings:
    sampling: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for SamplingParams (validated there)."""
    exclude_input_in_output: bool = True
    """False: text_output is the prompt followed by the generated text (Triton vLLM backend option)."""


def accepted_names() -> str:
    return ", ".join(sorted(GENERATION_INPUTS))


def generation_settings(
    parameters: dict[str, Any], tensor_values: dict[str, list[Any]]
) -> GenerationSettings:
    """Merge sampling_parameters, then request parameters, then input tensors (later wins)."""
    merged: dict[str, Any] = {}
    embedded = parameters.get("sampling_parameters", _first(tensor_values.get("sampling_parameters")))
    if embedded is not None:
        merged.update(_parse_sampling_parameters(embedded))
    for name, value in parameters.items():
        if name in PROTOCOL_PARAMETERS or name == "sampling_parameters":
            continue
        if name not in GENERATION_INPUTS:
            raise ApiError(
                400,
                f"unknown parameter '{name}'; accepted: {accepted_names()}",
                param=name,
                code="invalid_parameter",
            )
        merged[name] = value
    for name, values in tensor_values.items():
        if name == "sampling_parameters":
            continue
        merged[name] = values if name in _LIST_SETTINGS else _first(values)
    settings = GenerationSettings()
    for name, value in merged.items():
        if name == "exclude_input_in_output":
            if not isinstance(value, bool):
                raise ApiError(
                    400, f"'exclude_input_in_output' must be true or false, got {value!r}", param=name
                )
            settings.exclude_input_in_output = value
        else:
            settings.sampling[name] = _normalize(name, value)
    return settings


def _first(values: list[Any] | None) -> Any:
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _parse_sampling_parameters(raw: Any) -> dict[str, Any]:
    parsed = raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError as error:
            raise ApiError(
                400, f"'sampling_parameters' is not valid JSON: {error}", param="sampling_parameters"
            ) from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "'sampling_parameters' must be a JSON object", param="sampling_parameters")
    unknown = sorted(set(parsed) - SAMPLING_NAMES)
    if unknown:
        raise ApiError(
            400,
            f"unknown key '{unknown[0]}' in sampling_parameters; "
            f"accepted: {', '.join(sorted(SAMPLING_NAMES))}",
            param=f"sampling_parameters.{unknown[0]}",
        )
    return parsed


def _normalize(name: str, value: Any) -> Any:
    """JSON and tensor spellings of a value as SamplingParams expects them."""
    if name in _LIST_SETTINGS:
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item for item in items
        )
    if name in _FLOAT_SETTINGS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if name == "logit_bias" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as error:
            raise ApiError(
                400, f"'logit_bias' is not a JSON object of token id to bias: {error}", param=name
            ) from None
    return value
