"""A bounded load generator for the end-to-end tests: streaming chat completions through the openai
SDK, a fixed number of requests (or until stopped) at a fixed concurrency, every request recorded.

Why: the end-to-end tests judge berth by what a client sees -- time to first token, whether every
stream ended with its full token count, which requests failed and how. Each request asks for
exactly `max_tokens` tokens (`ignore_eos`, a vLLM extension the runtime honours) and the final usage
chunk (`stream_options.include_usage`), so a stream cut short (by scale-in, a rollout or a crash) is
told apart from one that ended normally: it lacks `finish_reason == "length"` or the token count.
Each prompt carries its request number, so no two are the same (examples/local-chat.yaml runs
without prefix caching anyway: every prefill is a full one).

Each request opens its own connection (see `LoadGenerator._client`), so the Service balances requests,
not long-lived connections.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import openai

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass(frozen=True)
class RequestRecord:
    """What one streaming request saw. Times are seconds on the monotonic clock."""

    index: int
    started: float
    ended: float
    ttft_seconds: float | None
    """From sending the request to the first chunk with generated text; None if none came."""
    content_chunks: int
    completion_tokens: int | None
    """From the final usage chunk; None if the stream ended before it."""
    finish_reason: str | None
    error: str | None
    """The exception's type and message, if the request failed or the stream broke."""

    def complete(self, max_tokens: int) -> bool:
        """The stream ended normally with exactly the tokens it asked for."""
        return (
            self.error is None
            and self.finish_reason == "length"
            and self.completion_tokens == max_tokens
            and self.content_chunks > 0
        )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in (0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class LoadResult:
    records: list[RequestRecord]
    max_tokens: int
    wall_seconds: float

    @property
    def ttfts(self) -> list[float]:
        return [record.ttft_seconds for record in self.records if record.ttft_seconds is not None]

    def ttft_p95(self) -> float:
        return percentile(self.ttfts, 0.95)

    def ttft_p50(self) -> float:
        return percentile(self.ttfts, 0.5)

    def duration_p50(self) -> float:
        """Median time from sending a request to the end of its stream."""
        return percentile([record.ended - record.started for record in self.records], 0.5)

    def incomplete(self) -> list[RequestRecord]:
        return [record for record in self.records if not record.complete(self.max_tokens)]

    def tokens_per_second(self) -> float:
        tokens = sum(record.completion_tokens or 0 for record in self.records)
        return tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        if not self.records:
            return "no requests"
        ttfts = self.ttfts
        ttft = (
            f"TTFT p50 {self.ttft_p50() * 1000:.0f} ms, p95 {self.ttft_p95() * 1000:.0f} ms"
            if ttfts
            else "no TTFT"
        )
        return (
            f"{len(self.records)} requests in {self.wall_seconds:.1f} s, {ttft}, "
            f"{self.tokens_per_second():.1f} tokens/s, {len(self.incomplete())} incomplete"
        )


@dataclass
class LoadGenerator:
    """Streams chat completions to `base_url` (`http://host:port`) from `concurrency` threads.

    `run(requests)` sends exactly that many and returns when all ended; `start()`/`stop()` keep
    sending until stopped (at most `limit` requests). Records accumulate in order of completion.
    """

    base_url: str
    model: str
    concurrency: int
    max_tokens: int
    request_timeout_seconds: float = 120.0
    prompt: str = PROMPT
    limit: int = 10_000
    pause_seconds: float = 0.0
    """Each worker waits this long after each request before its next (a client's think time)."""
    ramp_seconds: float = 0.0
    """Worker k sends its first request k x ramp_seconds / concurrency after the start, so requests
    do not all arrive (and prefill) at once, as clients that do not act in step."""
    records: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _started: float = 0.0

    def __post_init__(self) -> None:
        self._timeout = httpx.Timeout(self.request_timeout_seconds, connect=10.0)

    def _client(self) -> openai.OpenAI:
        # A new connection per request: the Service (the local proxy, like kube-proxy) balances
        # connections, not requests, so only then does each request go to a ready, non-terminating
        # endpoint chosen at its start -- as behind an L7 gateway. A kept-alive connection would stay
        # on one pod, and after that pod began to drain its next request would get the runtime's 503.
        http_client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=self._timeout)
        return openai.OpenAI(
            base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0, http_client=http_client
        )

    def one(self, client: openai.OpenAI, index: int) -> RequestRecord:
        """Sends request `index` and follows its stream to the end (or the error)."""
        started = time.monotonic()
        first: float | None = None
        chunks = 0
        tokens: int | None = None
        finish: str | None = None
        error: str | None = None
        try:
            stream = client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": f"Request {index}. {self.prompt}"}],
                max_tokens=self.max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            for chunk in stream:
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta.content:
                        chunks += 1
                        if first is None:
                            first = time.monotonic()
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
        except Exception as failure:  # every failure is recorded, none is fatal
            error = f"{type(failure).__name__}: {failure}"
        ended = time.monotonic()
        ttft = None if first is None else first - started
        return RequestRecord(index, started, ended, ttft, chunks, tokens, finish, error)

    def _worker(self, budget: int | None, delay: float) -> None:
        client = self._client()
        try:
            if self._stop.wait(delay):
                return
            while not self._stop.is_set():
                index = next(self._numbers)
                if index >= (budget if budget is not None else self.limit):
                    return
                record = self.one(client, index)
                with self._lock:
                    self.records.append(record)
                if self.pause_seconds and self._stop.wait(self.pause_seconds):
                    return
        finally:
            client.close()

    def _launch(self, budget: int | None) -> None:
        if self._threads:
            raise RuntimeError("this load generator already runs")
        self._stop.clear()
        self._numbers = itertools.count(len(self.records))
        self._started = time.monotonic()
        total = None if budget is None else len(self.records) + budget
        self._threads = [
            threading.Thread(
                target=self._worker,
                args=(total, n * self.ramp_seconds / self.concurrency),
                name=f"load-{n}",
                daemon=True,
            )
            for n in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _join(self, since: int) -> LoadResult:
        deadline = time.monotonic() + self.request_timeout_seconds + 30
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        self._threads = []
        if alive:
            raise RuntimeError(f"load threads {alive} still running past the request timeout")
        with self._lock:
            records = list(self.records[since:])
        return LoadResult(records, self.max_tokens, time.monotonic() - self._started)

    def run(self, requests: int) -> LoadResult:
        """Sends `requests` requests, `concurrency` at a time; returns their records."""
        since = len(self.records)
        self._launch(requests)
        return self._join(since)

    def start(self) -> None:
        """Starts sending until `stop()` (or `limit` requests in all)."""
        self._since = len(self.records)
        self._launch(None)

    def stop(self) -> LoadResult:
        """Lets every request in flight finish, then returns the records since `start()`."""
        self._stop.set()
        return self._join(self._since)

    def completed_since(self, moment: float) -> list[RequestRecord]:
        """Records of requests that ended after `moment` (monotonic), so far."""
        with self._lock:
            return [record for record in self.records if record.ended > moment]
