"""The autoscalers berth is compared with, each with its documented defaults (sources in
docs/autoscaling.md), configured as a careful user would for an LLM server.

All but Knative run through the Kubernetes HPA, so `HpaController` is the HPA v2 algorithm:
the replica calculators for a per-pod metric (missing pods assumed at 0 on the way up and at the
target on the way down) and for an external metric with an average-value target, the tolerance
(per direction where one is set), the stabilization windows (up: lowest recommendation of the
window, down: highest), and the rate policies over their periods (selectPolicy Max).

- HPA v2 on concurrency: a Pods metric, running + waiting requests per pod through a Prometheus
  adapter, target `target_concurrency`; 15 s sync; scale up at once by max(100%, 4 pods) per 15 s,
  scale down after a 300 s stabilization by at most 100% per 15 s; 10% tolerance.
- KEDA, Prometheus trigger on `sum(vllm:num_requests_running) + sum(vllm:num_requests_waiting)`,
  AverageValue `target_concurrency` per replica: an external metric behind the same HPA defaults
  (KEDA's 30 s pollingInterval governs activation from zero only; at minReplicas >= 1 the HPA
  queries KEDA's metrics server every sync).
- Knative KPA on concurrency: a 2 s tick over per-second queue-proxy concurrency; desired =
  ceil(average / target) over the 60 s stable window, or over the 6 s panic window once that asks
  for 200% of the Ready pods, never scaling down while panicking (until a stable window passes
  without panic); at most halving per tick; target `target_concurrency` at 100% utilization.
- Kaito (keda-kaito-scaler's ScaledObject): `vllm:num_requests_waiting`, AverageValue 10 per
  replica, scale up after a 60 s stabilization by at most 1 pod per 300 s (tolerance 0.1), down
  after a 300 s stabilization by at most 1 pod per 600 s (tolerance 0.5).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from bench.autoscale_metrics import MetricStore
from berth_operator.autoscaling.policy import ReplicaCounts
from berth_operator.autoscaling.signals import Signals


@dataclass(frozen=True)
class RatePolicy:
    """A scaling policy: `pods` pods, or `percent` % of the replicas, per `period_seconds`."""

    period_seconds: float
    pods: int | None = None
    percent: float | None = None


@dataclass(frozen=True)
class Direction:
    stabilization_seconds: float
    policies: tuple[RatePolicy, ...]
    tolerance: float = 0.1


HPA_UP = Direction(0.0, (RatePolicy(15.0, percent=100.0), RatePolicy(15.0, pods=4)))
HPA_DOWN = Direction(300.0, (RatePolicy(15.0, percent=100.0),))


@dataclass
class HpaController:
    """The HPA's behaviour between a raw recommendation and the Deployment's replicas."""

    min_replicas: int
    max_replicas: int
    up: Direction = HPA_UP
    down: Direction = HPA_DOWN
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    events: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, change) of the scalings it made, for the rate policies' periods."""

    def pods_metric(self, values: list[float], target: float, current: int) -> int:
        """The replica calculator for a per-pod metric; `current` pods exist, `values` have metrics."""
        if not values:
            return current
        ratio = sum(values) / (len(values) * target)
        missing = max(current - len(values), 0)
        if missing == 0:
            return current if self._tolerated(ratio) else math.ceil(ratio * len(values) - 1e-9)
        filled = sum(values) + (0.0 if ratio > 1 else missing * target)
        new_ratio = filled / ((len(values) + missing) * target)
        if self._tolerated(new_ratio) or (ratio > 1) != (new_ratio > 1):
            return current
        replicas = math.ceil(new_ratio * (len(values) + missing) - 1e-9)
        if (new_ratio < 1 and replicas > current) or (new_ratio > 1 and replicas < current):
            return current
        return replicas

    def external_average(self, total: float, target: float, current: int) -> int:
        """The replica calculator for an external metric with an average-value target."""
        ratio = total / (target * max(current, 1))
        return current if self._tolerated(ratio) else math.ceil(total / target - 1e-9)

    def _tolerated(self, ratio: float) -> bool:
        tolerance = self.up.tolerance if ratio > 1 else self.down.tolerance
        return abs(1.0 - ratio) <= tolerance

    def apply(self, now: float, raw: int, current: int) -> int:
        """Stabilize `raw`, limit it by the rate policies and the bounds; record the change."""
        raw = min(max(raw, self.min_replicas), self.max_replicas)
        self.recommendations.append((now, raw))
        longest = max(self.up.stabilization_seconds, self.down.stabilization_seconds)
        while self.recommendations and now - self.recommendations[0][0] > longest:
            self.recommendations.popleft()
        up = min(r for t, r in self.recommendations if now - t <= self.up.stabilization_seconds)
        down = max(r for t, r in self.recommendations if now - t <= self.down.stabilization_seconds)
        target = up if up > current else down if down < current else current
        if target > current:
            target = min(target, self._limit(now, current, self.up, +1))
        elif target < current:
            target = max(target, self._limit(now, current, self.down, -1))
        target = min(max(target, self.min_replicas), self.max_replicas)
        if target != current:
            self.events.append((now, target - current))
        return target

    def _limit(self, now: float, current: int, direction: Direction, sign: int) -> int:
        limits = []
        for policy in direction.policies:
            changed = sum(c for t, c in self.events if now - t < policy.period_seconds and c * sign > 0)
            start = current - changed
            if policy.pods is not None:
                limits.append(start + sign * policy.pods)
            else:
                factor = 1 + sign * (policy.percent or 0.0) / 100
                limits.append(math.ceil(start * factor) if sign > 0 else math.floor(start * factor))
        return max(limits) if sign > 0 else min(limits)


@dataclass
class HpaConcurrency:
    min_replicas: int
    max_replicas: int
    target_concurrency: float
    interval_seconds: float = 15.0
    name: str = "HPA concurrency"
    hpa: HpaController = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = HpaController(self.min_replicas, self.max_replicas)

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int:
        raw = self.hpa.pods_metric(store.pod_gauges(now), self.target_concurrency, counts.desired)
        return self.hpa.apply(now, raw, counts.desired)


@dataclass
class KedaConcurrency:
    min_replicas: int
    max_replicas: int
    target_concurrency: float
    interval_seconds: float = 15.0
    name: str = "KEDA running+waiting"
    hpa: HpaController = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = HpaController(self.min_replicas, self.max_replicas)

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int:
        signals = store.signals(now)
        if not isinstance(signals, Signals):
            return counts.desired
        total = signals.running_requests + signals.waiting_requests
        raw = self.hpa.external_average(total, self.target_concurrency, counts.desired)
        return self.hpa.apply(now, raw, counts.desired)


@dataclass
class KnativeKpa:
    min_replicas: int
    max_replicas: int
    target_concurrency: float
    stable_window_seconds: float = 60.0
    panic_window_seconds: float = 6.0
    panic_threshold: float = 2.0
    max_scale_down_rate: float = 2.0
    max_scale_up_rate: float = 1000.0
    interval_seconds: float = 2.0
    name: str = "Knative KPA"
    panic_since: float | None = None
    max_panic_pods: int = 0

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int:
        ready = max(counts.ready, 1)
        stable = store.concurrency_average(now, self.stable_window_seconds) / self.target_concurrency
        panic = store.concurrency_average(now, self.panic_window_seconds) / self.target_concurrency
        desired_stable, desired_panic = math.ceil(stable - 1e-9), math.ceil(panic - 1e-9)
        if panic / ready >= self.panic_threshold:
            if self.panic_since is None:
                self.max_panic_pods = counts.ready
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= self.stable_window_seconds:
            self.panic_since, self.max_panic_pods = None, 0
        target = desired_stable
        if self.panic_since is not None:
            self.max_panic_pods = max(self.max_panic_pods, desired_panic)
            target = self.max_panic_pods
        target = min(target, math.ceil(self.max_scale_up_rate * ready))
        target = max(target, math.floor(ready / self.max_scale_down_rate))
        return min(max(target, self.min_replicas), self.max_replicas)


KAITO_UP = Direction(60.0, (RatePolicy(300.0, pods=1),), tolerance=0.1)
KAITO_DOWN = Direction(300.0, (RatePolicy(600.0, pods=1),), tolerance=0.5)


@dataclass
class Kaito:
    min_replicas: int
    max_replicas: int
    waiting_per_replica: float = 10.0
    interval_seconds: float = 15.0
    name: str = "Kaito (KEDA waiting)"
    hpa: HpaController = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = HpaController(self.min_replicas, self.max_replicas, KAITO_UP, KAITO_DOWN)

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int:
        signals = store.signals(now)
        if not isinstance(signals, Signals):
            return counts.desired
        raw = self.hpa.external_average(signals.waiting_requests, self.waiting_per_replica, counts.desired)
        return self.hpa.apply(now, raw, counts.desired)
