"""A fluid, time-stepped model of LLM replicas with continuous batching, for the autoscaling simulation.

Each replica runs engine steps: every step decodes one token for each running request and
prefills up to `prefill_chunk` prompt tokens (chunked prefill), taking
`step_base + step_per_sequence * batch + step_per_prefill_token * prefilled` seconds. The constants
model the 8B shape on one H200 as a plain PyTorch decode step replayed from one CUDA graph was
first measured there: 6.7 ms per step plus 24 us per running sequence (149 tok/s at batch 1, 7.8k
tok/s at batch 64) and 45 us per prefilled token (about 2x the compute limit). berth's engine as
measured since is faster (docs/gpu-results.md: 198 tok/s at batch 1, 8,776 at batch 64, a
2,048-token prefill 1.31x the compute limit), so the simulated replicas err on the slow side.
A replica admits waiting requests up to `max_batch` and its KV-cache limit. Within one time step
the model is fluid: steps are counted fractionally, which keeps an hour of a dozen replicas to
seconds.

Metrics are counted the way the runtime exports them (vLLM's names): prompt and generated
tokens, finished requests, TTFT and inter-token latency histograms, running/waiting gauges and
KV-cache usage.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

# vLLM's bucket bounds (seconds) for the two latency histograms.
TTFT_BUCKETS = np.array(
    [
        0.001,
        0.005,
        0.01,
        0.02,
        0.04,
        0.06,
        0.08,
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        20.0,
        40.0,
        80.0,
    ]
)
ITL_BUCKETS = np.array(
    [
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.4,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        20.0,
        40.0,
        80.0,
    ]
)


@dataclass(frozen=True)
class ReplicaModel:
    step_base: float = 0.0067
    step_per_sequence: float = 0.000024
    step_per_prefill_token: float = 0.000045
    prefill_chunk: int = 512
    max_batch: int = 64
    kv_cache_tokens: int = 200_000
    cold_start_seconds: float = 90.0


@dataclass
class ReplicaMetrics:
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    request_success: float = 0.0
    ttft_buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(TTFT_BUCKETS) + 1))
    itl_buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(ITL_BUCKETS) + 1))


@dataclass
class FinishedRequest:
    ttft: float
    mean_itl: float


class Replica:
    """One GPU replica: a waiting queue, a running batch, and its metric counters."""

    def __init__(self, model: ReplicaModel, ready_at: float) -> None:
        self.model = model
        self.ready_at = ready_at
        self.draining = False
        self.waiting: deque[tuple[float, int, int]] = deque()  # (arrival, prompt, output)
        self.arrival = np.zeros(0)
        self.prompt = np.zeros(0)
        self.prefill_left = np.zeros(0)
        self.decode_left = np.zeros(0)
        self.output = np.zeros(0)
        self.first_token = np.zeros(0)
        self.metrics = ReplicaMetrics()

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.arrival)

    @property
    def running(self) -> int:
        return len(self.arrival)

    def kv_usage(self) -> float:
        used = self.prompt - self.prefill_left + (self.output - self.decode_left)
        return float(used.sum()) / self.model.kv_cache_tokens

    def _admit(self) -> None:
        reserved = float((self.prompt + self.output).sum())
        new: list[tuple[float, int, int]] = []
        while self.waiting and len(self.arrival) + len(new) < self.model.max_batch:
            _, prompt, output = self.waiting[0]
            if reserved + prompt + output > self.model.kv_cache_tokens and (len(self.arrival) or new):
                break
            reserved += prompt + output
            new.append(self.waiting.popleft())
        if new:
            block = np.array(new, dtype=float)
            self.arrival = np.concatenate([self.arrival, block[:, 0]])
            self.prompt = np.concatenate([self.prompt, block[:, 1]])
            self.prefill_left = np.concatenate([self.prefill_left, block[:, 1]])
            self.output = np.concatenate([self.output, block[:, 2]])
            self.decode_left = np.concatenate([self.decode_left, block[:, 2]])
            self.first_token = np.concatenate([self.first_token, np.full(len(new), np.nan)])

    def step(self, now: float, dt: float, finished: list[FinishedRequest]) -> None:
        """Advance this replica from `now` by `dt` seconds."""
        self._admit()
        if not len(self.arrival):
            return
        model = self.model
        prefilling = self.prefill_left > 0
        decoding_batch = int((~prefilling).sum())
        pending_prefill = float(self.prefill_left.sum())
        tokens = np.zeros(len(self.arrival))  # decode tokens each request makes in this dt
        if pending_prefill > 0:
            step_full = model.step_base + model.step_per_sequence * decoding_batch
            step_full += model.step_per_prefill_token * model.prefill_chunk
            prefill_time = min(dt, pending_prefill / model.prefill_chunk * step_full)
            capacity = prefill_time / step_full * model.prefill_chunk
            order = np.flatnonzero(prefilling)
            cumulative = np.cumsum(self.prefill_left[order])
            done_mask = cumulative <= capacity + 1e-6
            done = order[done_mask]
            partial = order[~done_mask]
            done_at = cumulative[done_mask] / model.prefill_chunk * step_full
            if len(partial):
                previous = cumulative[~done_mask][0] - self.prefill_left[partial[0]]
                self.prefill_left[partial[0]] -= max(capacity - previous, 0.0)
            self.metrics.prompt_tokens += float(self.prompt[done].sum())
            self.prefill_left[done] = 0.0
            self.first_token[done] = now + done_at
            self.decode_left[done] -= 1
            self.metrics.generation_tokens += len(done)
            ttft = now + done_at - self.arrival[done]
            self.metrics.ttft_buckets += np.bincount(
                np.searchsorted(TTFT_BUCKETS, ttft), minlength=len(TTFT_BUCKETS) + 1
            )
            tokens[~prefilling] += prefill_time / step_full
            self._observe_itl(step_full, decoding_batch * prefill_time / step_full)
        else:
            prefill_time = 0.0
            done, done_at = np.zeros(0, dtype=int), np.zeros(0)
        rest = dt - prefill_time
        if rest > 0:
            decoding_now = self.prefill_left == 0
            step_decode = model.step_base + model.step_per_sequence * int(decoding_now.sum())
            rest_tokens = np.where(decoding_now, rest / step_decode, 0.0)
            if len(done):
                rest_tokens[done] = (dt - done_at) / step_decode
            tokens += rest_tokens
            self._observe_itl(step_decode, float(rest_tokens.sum()))
        produced = np.minimum(tokens, np.maximum(self.decode_left, 0.0))
        self.metrics.generation_tokens += float(produced.sum())
        self.decode_left -= tokens
        complete = (self.prefill_left == 0) & (self.decode_left <= 0)
        if complete.any():
            end = now + dt + self.decode_left[complete] * (dt / np.maximum(tokens[complete], 1e-9))
            for arrival, first, output, finish in zip(
                self.arrival[complete], self.first_token[complete], self.output[complete], end, strict=True
            ):
                finished.append(
                    FinishedRequest(ttft=first - arrival, mean_itl=(finish - first) / max(output - 1, 1))
                )
            self.metrics.request_success += int(complete.sum())
            keep = ~complete
            for name in ("arrival", "prompt", "prefill_left", "decode_left", "output", "first_token"):
                setattr(self, name, getattr(self, name)[keep])

    def _observe_itl(self, step_seconds: float, token_count: float) -> None:
        if token_count > 0:
            self.metrics.itl_buckets[np.searchsorted(ITL_BUCKETS, step_seconds)] += token_count
