"""What the trace demands, second by second, and the autoscalers that know it.

`DemandSeries` prices every request of a trace in replica-seconds, from the serving model: its
prompt at the pace of chunked prefill (a chunk per step, the step's base included) and its output
at a full batch's decode step per token, the step's KV reads at the request's mean context
included. Summed per second it is the trace's demand in replicas at full use, known exactly, which
no autoscaler that reads metrics can know.

- `Oracle` adds, at every interval, the replicas the demand of the centred minute around now needs
  at `utilization` (50%) of each, at once, and never removes one: a bound on the TTFT share of any
  policy that adds replicas once a rise shows in what it sees -- it sees the demand exactly and
  without a window's lag, keeps headroom few policies would pay for, and never scales in before a
  rise. What it still misses is the cold start after a rise nobody saw coming; its GPU-hours are
  beside the point.
- `Clairvoyant` sizes for the demand up to one cold start ahead (and scales in when that falls),
  so its replicas are Ready when the demand arrives: what prediction, or warm headroom, adds.

`rising(t)` says whether the demand has begun to rise: the expected demand of the last 30 s (the
trace's rate times the mean price of the requests around then, so not the noise of a few
requests) exceeds that of the minute before by more than 15%. A scale-in then is a scale-in into
a rising edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.autoscale_metrics import MetricStore
from bench.autoscale_serving import ReplicaModel
from bench.autoscale_traces import Trace
from berth_operator.autoscaling.policy import ReplicaCounts

RISING_MARGIN = 1.15


def request_seconds(model: ReplicaModel, prompt: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Replica-seconds each request costs at a full batch."""
    batch = model.max_batch
    context = prompt + output / 2
    per_token = model.step_base / batch + model.step_per_sequence + model.step_per_kv_token * context
    per_prompt_token = model.step_base / model.prefill_chunk + model.step_per_prefill_token
    return prompt * per_prompt_token + output * per_token


@dataclass
class DemandSeries:
    trace: Trace
    model: ReplicaModel

    def __post_init__(self) -> None:
        seconds = int(self.trace.duration_seconds) + 1
        cost = request_seconds(
            self.model, self.trace.prompt_tokens.astype(float), self.trace.output_tokens.astype(float)
        )
        self.cost = cost
        self.per_second = np.bincount(self.trace.arrivals.astype(np.int64), weights=cost, minlength=seconds)[
            :seconds
        ]
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.per_second)])

    def average(self, start: float, end: float) -> float:
        """Mean demand (replicas at full use) over [start, end) seconds, clipped to the trace."""
        last = len(self.per_second)
        lo, hi = min(max(int(start), 0), last), min(max(int(end), 0), last)
        if hi <= lo:
            return 0.0
        return float(self.cumulative[hi] - self.cumulative[lo]) / (hi - lo)

    def expected(self, start: float, end: float) -> float:
        """Mean expected demand over [start, end): the rate times the mean price of the requests
        that arrived within a minute of it."""
        times = np.arange(max(start, 0.0), max(end, 1.0), 5.0)
        values = []
        for t in times:
            near = (self.trace.arrivals >= t - 60.0) & (self.trace.arrivals < t + 60.0)
            price = float(self.cost[near].mean()) if near.any() else 0.0
            values.append(self.trace.rate(float(t)) * price)
        return float(np.mean(values)) if values else 0.0

    def rising(self, now: float) -> bool:
        return self.expected(now - 30.0, now) > RISING_MARGIN * self.expected(now - 90.0, now - 30.0)


@dataclass
class Oracle:
    demand: DemandSeries
    min_replicas: int
    max_replicas: int
    lookahead_seconds: float = 0.0
    utilization: float = 0.5
    scales_in: bool = False
    interval_seconds: float = 10.0
    name: str = "oracle (sees demand now)"

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int:
        need = self.demand.average(now - 30.0, now + 30.0)
        if self.lookahead_seconds:
            starts = np.arange(now, now + self.lookahead_seconds + 1.0, 10.0)
            need = max(self.demand.average(t - 30.0, t + 30.0) for t in starts)
        wanted = min(max(math.ceil(need / self.utilization - 1e-9), self.min_replicas), self.max_replicas)
        return wanted if self.scales_in else max(wanted, counts.desired)


def clairvoyant(demand: DemandSeries, min_replicas: int, max_replicas: int) -> Oracle:
    return Oracle(
        demand,
        min_replicas,
        max_replicas,
        lookahead_seconds=demand.model.cold_start_seconds + 10.0,
        utilization=0.6,
        scales_in=True,
        name="clairvoyant (cold start ahead)",
    )
