"""A fluid, time-stepped model of LLM replicas with continuous batching, for the autoscaling simulation.

Each replica runs engine steps. A step decodes one token for every running request that is past its
prefill and prefills up to `prefill_chunk` prompt tokens (chunked prefill); it takes

    step_base + step_per_sequence * batch + step_per_kv_token * context + step_per_prefill_token * prefilled

where `context` is the KV cache the step's decode attention must read: the tokens (prompt plus
output so far) of every decoding request. At ~900-token contexts and batch 64 those reads are a
quarter of the step; a model without them overstates what a replica serves for long prompts.

The constants are berth's own engine on one NVIDIA H200, 8B shape, bf16 (docs/gpu-results.md,
run 3, `bench/decode.py`): decode steps of 4.96 ms at batch 1, 5.16 ms at batch 8 and 5.89 ms at
batch 64 with prompt 128 / 128 new tokens (mean context 192), copy bandwidth 4.19 TB/s, and a
2,048-token prefill in 49.9 ms. `measured_replica` derives them: the KV read per token is the 8B
shape's 128 KiB (32 layers x 8 KV heads x 128 x K and V x 2 bytes) at the copy bandwidth; the
batch-1 and batch-64 steps less their KV reads give the base and the per-sequence cost; the prefill
step less the base, over 2,048, the cost of a prompt token. The batch-8 step is then predicted
within 2%. The KV cache holds what 90% of the card's 141 GB leaves after 16 GB of weights.
The runtime runs with `--max-num-seqs 64` (its default) and `--max-num-batched-tokens 512`: its
default budget of 2,048 makes a prefill step ~50 ms, the whole 50 ms ITL target by itself.

Within one time step the model is fluid: steps are counted fractionally, which keeps an hour of a
dozen replicas to seconds. Metrics are counted the way the runtime exports them (vLLM's names):
prompt and generated tokens, finished requests, TTFT and inter-token latency histograms,
running/waiting gauges and KV-cache usage.
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

# docs/gpu-results.md, run 3 (docs/gpu-results/run3/decode.json): 8B shape, bf16, berth-graphs.
MEASURED_STEP_SECONDS = {1: 4.964e-3, 8: 5.158e-3, 64: 5.889e-3}
MEASURED_CONTEXT_TOKENS = 128 + 128 / 2  # prompt 128, 128 new tokens: the mean context of a step
MEASURED_PREFILL_SECONDS = 49.94e-3  # one 2,048-token prompt
MEASURED_PREFILL_TOKENS = 2048
COPY_BANDWIDTH_BYTES_PER_SECOND = 4.19e12
KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads, head dim 128, bf16
CARD_BYTES = 143_771 * 2**20  # H200 as the run saw it
WEIGHT_BYTES = 16.06e9  # 8.03B parameters in bf16


@dataclass(frozen=True)
class ReplicaModel:
    step_base: float
    step_per_sequence: float
    step_per_kv_token: float
    step_per_prefill_token: float
    prefill_chunk: int = 512
    max_batch: int = 64
    kv_cache_tokens: int = 900_000
    cold_start_seconds: float = 90.0


def measured_replica(cold_start_seconds: float = 90.0) -> ReplicaModel:
    """The replica model whose constants come from berth's measured H200 figures (module docstring)."""
    per_kv_token = KV_BYTES_PER_TOKEN / COPY_BANDWIDTH_BYTES_PER_SECOND
    batch1 = MEASURED_STEP_SECONDS[1] - per_kv_token * MEASURED_CONTEXT_TOKENS
    batch64 = MEASURED_STEP_SECONDS[64] - per_kv_token * MEASURED_CONTEXT_TOKENS * 64
    per_sequence = (batch64 - batch1) / 63
    base = batch1 - per_sequence
    return ReplicaModel(
        step_base=base,
        step_per_sequence=per_sequence,
        step_per_kv_token=per_kv_token,
        step_per_prefill_token=(MEASURED_PREFILL_SECONDS - base) / MEASURED_PREFILL_TOKENS,
        kv_cache_tokens=int((0.9 * CARD_BYTES - WEIGHT_BYTES) / KV_BYTES_PER_TOKEN),
        cold_start_seconds=cold_start_seconds,
    )


def predicted_step(model: ReplicaModel, batch: int, context_per_sequence: float) -> float:
    """A decode step's seconds at `batch` sequences of `context_per_sequence` tokens each."""
    return (
        model.step_base
        + model.step_per_sequence * batch
        + model.step_per_kv_token * context_per_sequence * batch
    )


@dataclass
class ReplicaMetrics:
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    request_success: float = 0.0
    ttft_buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(TTFT_BUCKETS) + 1))
    itl_buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(ITL_BUCKETS) + 1))


@dataclass
class FinishedRequest:
    arrival: float
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
        return float(self._context().sum()) / self.model.kv_cache_tokens

    def _context(self) -> np.ndarray:
        """Tokens in each running request's KV cache: its prompt so far plus its output so far."""
        return self.prompt - self.prefill_left + np.maximum(self.output - self.decode_left, 0.0)

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
        decoding = ~prefilling
        decoding_batch = int(decoding.sum())
        kv_read = model.step_per_kv_token * float(self._context()[decoding].sum())
        pending_prefill = float(self.prefill_left.sum())
        tokens = np.zeros(len(self.arrival))  # decode tokens each request makes in this dt
        if pending_prefill > 0:
            step_full = model.step_base + model.step_per_sequence * decoding_batch + kv_read
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
            tokens[decoding] += prefill_time / step_full
            self._observe_itl(step_full, decoding_batch * prefill_time / step_full)
        else:
            prefill_time = 0.0
            done, done_at = np.zeros(0, dtype=int), np.zeros(0)
        rest = dt - prefill_time
        if rest > 0:
            decoding_now = self.prefill_left == 0
            kv_now = model.step_per_kv_token * float(self._context()[decoding_now].sum())
            step_decode = model.step_base + model.step_per_sequence * int(decoding_now.sum()) + kv_now
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
                    FinishedRequest(
                        arrival=arrival, ttft=first - arrival, mean_itl=(finish - first) / max(output - 1, 1)
                    )
                )
            self.metrics.request_success += int(complete.sum())
            keep = ~complete
            for name in ("arrival", "prompt", "prefill_left", "decode_left", "output", "first_token"):
                setattr(self, name, getattr(self, name)[keep])

    def _observe_itl(self, step_seconds: float, token_count: float) -> None:
        if token_count > 0:
            self.metrics.itl_buckets[np.searchsorted(ITL_BUCKETS, step_seconds)] += token_count
