"""Malformed requests on the live server: hundreds of valid bodies for every POST endpoint, each with
one to three fields replaced by values of the wrong type or range (or removed), must each get an
answer below 500 with a JSON error body, and the server must still be serving afterwards.

Why random but seeded: the hand-written refusal tests cover the cases someone thought of; mutating
every field of real bodies finds the ones nobody did (it found a 500 for a list-valued KServe
datatype). The seed keeps a failure reproducible. The server fixture is in live_api_fixtures.py."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
from live_api import auth
from live_server import LiveServer

pytest_plugins = ["live_api_fixtures"]

SEED = 7
ROUNDS = 400
WRONG_VALUES: list[Any] = [
    None, -1, 0, 2**63, -(2**63), 1e308, 0.5, "x", "", "a" * 5000, [], {}, [1, 2], ["a"], [[1]], [None],
    {"a": 1}, True, False, "NaN", "\u0000",
]  # fmt: skip
VALID_BODIES: dict[str, dict[str, Any]] = {
    "/v1/completions": {
        "model": "tiny", "prompt": "hello", "max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "top_k": 5,
        "n": 1, "stop": ["x"], "logprobs": 2, "echo": False, "seed": 1, "min_tokens": 1,
        "logit_bias": {"5": 1.0}, "stream": False, "ignore_eos": False, "user": "u",
        "stream_options": {"include_usage": True},
    },
    "/v1/chat/completions": {
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
        "temperature": 0.5, "top_p": 0.9, "n": 1, "stop": "x", "logprobs": True, "top_logprobs": 2,
        "seed": 1, "stream": False, "response_format": {"type": "text"}, "max_completion_tokens": 3,
    },
    "/v2/models/tiny/generate": {
        "text_input": "hello", "max_tokens": 3, "parameters": {"temperature": 0.5, "stream": False},
    },
    "/v2/models/tiny/generate_stream": {"text_input": "hello", "max_tokens": 3},
    "/v2/models/tiny/infer": {
        "id": "1",
        "inputs": [
            {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["hello"]},
            {"name": "max_tokens", "shape": [1], "datatype": "INT32", "data": [3]},
        ],
        "outputs": [{"name": "text_output"}],
        "parameters": {"temperature": 0.1},
    },
}  # fmt: skip


def _mutated(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    """A copy of body with one to three values, at any depth, replaced by a wrong one or removed."""
    mutated: dict[str, Any] = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        target: Any = mutated
        while True:
            keys = list(target) if isinstance(target, dict) else list(range(len(target)))
            if not keys:
                break
            key = rng.choice(keys)
            if isinstance(target[key], dict | list) and target[key] and rng.random() < 0.6:
                target = target[key]
                continue
            if isinstance(target, dict) and rng.random() < 0.2:
                del target[key]
            else:
                target[key] = json.loads(json.dumps(rng.choice(WRONG_VALUES)))
            break
    return mutated


def test_mutated_bodies_get_4xx_json_errors_or_answers_and_never_a_5xx(server: LiveServer) -> None:
    rng = random.Random(SEED)
    failures: list[str] = []
    headers = {**auth(), "content-type": "application/json"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for _ in range(ROUNDS):
            for path, valid in VALID_BODIES.items():
                body = json.dumps(_mutated(rng, valid))
                response = client.post(path, content=body)
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} {path} {body[:300]}: {response.text[:300]}")
                elif response.status_code >= 400 and "error" not in response.json():
                    failures.append(f"{response.status_code} without an error field: {path} {body[:300]}")
        assert client.get("/v2/health/ready").status_code == 200
    assert failures == [], "\n".join(failures[:20])
