"""What the live-server tests share besides the server itself: the API key, the prompt, and the
helpers that build tritonclient inputs and read its outputs. The server and client fixtures are in
live_api_fixtures.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.http as httpclient

API_KEY = "test-key-1234"
PROMPT = "The quick brown fox jumps over the lazy dog."
LONG_TEXT = "word " * 600
"""A prompt longer than the tiny model's max_model_len."""


def auth() -> dict[str, str]:
    """A fresh header dict per call: tritonclient adds its own headers to the dict it is given."""
    return {"Authorization": f"Bearer {API_KEY}"}


def text_inputs(prompts: list[str], max_tokens: int, binary: bool = True) -> list[httpclient.InferInput]:
    text = httpclient.InferInput("text_input", [len(prompts)], "BYTES")
    text.set_data_from_numpy(np.array([p.encode() for p in prompts], dtype=object), binary_data=binary)
    limit = httpclient.InferInput("max_tokens", [1], "INT32")
    limit.set_data_from_numpy(np.array([max_tokens], dtype=np.int32), binary_data=binary)
    return [text, limit]


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
