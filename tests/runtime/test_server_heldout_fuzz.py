"""A seeded fuzz over every endpoint of the live server with the bodies that found issue #17's
held-out defects: valid and mutated JSON, gzip and deflate (valid, truncated, garbage, inflating
past the limit), chunked transfers (within and over 32 MiB), JSON nested hundreds to thousands of
levels, 12 MiB prompts, non-JSON bytes. Whatever arrives, no response is a 5xx, every response is
JSON (a stream: every event), and /v2/health/live, probed every 10 ms from another thread all along,
never takes 100 ms. The seed makes a failure reproducible; the server fixture is in
live_api_fixtures.py."""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
from live_api import auth
from live_server import LiveServer
from test_server_heldout_bodies import HEALTH_STALL_LIMIT_SECONDS, HealthProbe

pytest_plugins = ["live_api_fixtures"]

SEED = 17
ROUNDS = 1200
LIMIT_BYTES = 32 * 1024 * 1024
BODIES: dict[str, dict[str, Any]] = {
    "/v1/completions": {"model": "tiny", "prompt": "hello", "max_tokens": 2, "logprobs": 2},
    "/v1/chat/completions": {
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
        "logprobs": True, "top_logprobs": 2,
    },
    "/v2/models/tiny/infer": {
        "inputs": [
            {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["hello"]},
            {"name": "max_tokens", "shape": [1], "datatype": "INT32", "data": [2]},
        ],
    },
    "/v2/models/tiny/generate": {"text_input": "hello", "max_tokens": 2},
    "/v2/models/tiny/generate_stream": {"text_input": "hello", "max_tokens": 2},
    "/tokenize": {"model": "tiny", "prompt": "hello"},
    "/detokenize": {"model": "tiny", "tokens": [5, 6, 7]},
    "/v2/repository/index": {},
}  # fmt: skip
GET_PATHS = [
    "/v1/models", "/v1/models/tiny", "/v1/models/absent", "/version", "/v2", "/v2/models/tiny",
    "/v2/models/tiny/config", "/v2/models/tiny/stats", "/v2/models/tiny/ready", "/v2/models/absent",
]  # fmt: skip
DEEP = "deeply-nested:"
WRONG_VALUES: list[Any] = [None, -1, 2**70, 1e308, "", "a" * 3000, [], {}, [[1]], True, "\u0000"]


def _mutated(rng: random.Random, body: Any) -> Any:
    """`body` with one value anywhere replaced by a wrong one, a deep nest (a DEEP marker `_request`
    replaces by the nested text, which this process's own json could not build), or a stream flag."""
    copy = json.loads(json.dumps(body))
    target = copy
    while True:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            return copy
        key = rng.choice(keys)
        if isinstance(target[key], dict | list) and target[key] and rng.random() < 0.5:
            target = target[key]
            continue
        choice = rng.random()
        if choice < 0.3:
            target[key] = f"{DEEP}{rng.choice([100, 128, 129, 500, 3000])}"  # spliced in as text
        elif choice < 0.4 and isinstance(copy, dict):
            copy["stream"] = True
        else:
            target[key] = rng.choice(WRONG_VALUES)
        return copy


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _request(rng: random.Random, path: str, body: dict[str, Any]) -> tuple[Any, dict[str, str], str]:
    """(content, headers, what it is) of one fuzzed request to `path`."""
    headers = {"content-type": "application/json"}
    text = json.dumps(_mutated(rng, body) if rng.random() < 0.6 else body)
    raw = re.sub(
        f'"{DEEP}(\\d+)"', lambda match: "[" * int(match[1]) + "1" + "]" * int(match[1]), text
    ).encode()
    kind = rng.choice(
        ["plain", "gzip", "deflate", "chunked", "broken-gzip", "garbage", "truncated", "unknown-enc"]
    )
    if kind == "gzip":
        return gzip.compress(raw), {**headers, "content-encoding": "gzip"}, kind
    if kind == "deflate":
        return zlib.compress(raw), {**headers, "content-encoding": "deflate"}, kind
    if kind == "chunked":
        return _chunks(raw, rng.randint(1, 64)), headers, kind
    if kind == "broken-gzip":
        return (
            gzip.compress(raw)[: rng.randint(0, 12)] + b"garbage",
            {**headers, "content-encoding": "gzip"},
            kind,
        )
    if kind == "garbage":
        return rng.randbytes(rng.randint(0, 300)), headers, kind
    if kind == "truncated":
        return raw[: rng.randint(0, len(raw))], headers, kind
    if kind == "unknown-enc":
        return raw, {**headers, "content-encoding": "br"}, kind
    return raw, headers, kind


def _problem(response: httpx.Response, what: str) -> str | None:
    """Why `response` breaks the rules, or None."""
    if response.status_code >= 500:
        return f"{response.status_code} for {what}: {response.text[:300]}"
    media_type = response.headers.get("content-type", "")
    if response.status_code < 400 and not response.content:
        return None  # readiness answers by status alone, as KServe v2 defines it
    try:
        if media_type.startswith("text/event-stream"):
            for line in response.text.splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line.removeprefix("data: "))
            return None
        parsed = json.loads(response.content)
    except ValueError:
        return f"a response that is not JSON ({media_type}) for {what}: {response.text[:300]}"
    if response.status_code >= 400 and not (isinstance(parsed, dict) and "error" in parsed):
        return f"{response.status_code} without an error field for {what}: {response.text[:300]}"
    return None


def _extremes() -> list[tuple[str, Any, dict[str, str], str]]:
    """The few expensive bodies, once each: over the limit chunked, a gzip bomb, a 12 MiB prompt
    (gzipped: test_server_heldout_bodies sends it plain to every generation route)."""
    json_headers = {"content-type": "application/json"}
    bomb = gzip.compress(b" " * (LIMIT_BYTES + 1024 * 1024), 9)
    prompt = json.dumps({"prompt": "fox " * (3 * 1024 * 1024), "max_tokens": 2}).encode()
    oversized = b"[" + b"1," * (LIMIT_BYTES // 2)
    return [
        (
            "/v1/completions",
            _chunks(oversized, 1 << 20),
            json_headers,
            "chunked 32+ MiB",
        ),
        ("/v2/models/tiny/infer", bomb, {**json_headers, "content-encoding": "gzip"}, "gzip bomb"),
        (
            "/tokenize",
            gzip.compress(prompt),
            {**json_headers, "content-encoding": "gzip"},
            "gzip 12 MiB prompt",
        ),
    ]


def test_fuzzed_requests_to_every_endpoint_never_5xx_always_json_and_health_stays_prompt(
    server: LiveServer,
) -> None:
    rng = random.Random(SEED)
    problems: list[str] = []
    extremes = _extremes()  # built before the probe starts: building them holds this process's GIL
    with (
        httpx.Client(base_url=server.url, headers=auth(), timeout=60) as client,
        HealthProbe(server.url) as health,
    ):
        for path, content, headers, what in extremes:
            problem = _problem(client.post(path, content=content, headers=headers), f"{what} to {path}")
            problems += [problem] if problem else []
        for _ in range(ROUNDS):
            if rng.random() < 0.15:
                path = rng.choice(GET_PATHS)
                problem = _problem(client.get(path), f"GET {path}")
            else:
                path = rng.choice(list(BODIES))
                content, headers, kind = _request(rng, path, BODIES[path])
                shown = content[:200] if isinstance(content, bytes) else "<chunked>"
                problem = _problem(
                    client.post(path, content=content, headers=headers), f"{kind} {path} {shown!r}"
                )
            problems += [problem] if problem else []
        assert client.get("/v2/health/ready").status_code == 200
    assert problems == [], "\n".join(problems[:20])
    assert health.worst < HEALTH_STALL_LIMIT_SECONDS, f"health stalled {health.worst:.3f} s"
