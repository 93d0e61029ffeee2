"""The autoscalers compared by the simulation: berth's policy (the operator's own code) and three
baselines modelled on what is deployed today.

- KEDA on `vllm:num_requests_waiting`: polled every 30 s, desired = ceil(waiting / threshold), HPA's
  default scale-up rate (double or +4 per period) and a 300 s cooldown before scaling down.
- HPA on concurrency (KServe / KubeAI style): every 15 s, desired = ceil((running + waiting) /
  target per replica), 10% tolerance, 300 s scale-down stabilization.
- Kaito-style step scaling: +1 replica at most every 300 s while waiting requests exceed the
  threshold per replica, -1 at most every 300 s once there are none.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from berth_operator.autoscaling.capacity import SloTargets
from berth_operator.autoscaling.policy import ReplicaCounts, Targets, decide
from berth_operator.autoscaling.signals import Observation, Signals
from berth_operator.autoscaling.state import ScalingHistory


class Scaler(Protocol):
    name: str
    interval_seconds: float

    def desired(self, now: float, observation: Observation, counts: ReplicaCounts) -> int: ...


@dataclass
class BerthScaler:
    targets: Targets
    interval_seconds: float = 10.0
    name: str = "berth (SLO policy)"
    history: ScalingHistory = field(default_factory=ScalingHistory)
    reasons: list[str] = field(default_factory=list)

    def desired(self, now: float, observation: Observation, counts: ReplicaCounts) -> int:
        decision = decide(observation, self.targets, counts, self.history, now)
        self.history = decision.history
        if decision.apply:
            self.reasons.append(f"t={now:.0f}s {decision.reason}")
        return decision.replicas if decision.apply else counts.desired


@dataclass
class _HpaBehaviour:
    """HPA's defaults: scale up by max(100%, 4 pods) per period; scale down to the highest
    recommendation of the stabilization window."""

    min_replicas: int
    max_replicas: int
    down_stabilization_seconds: float = 300.0
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)

    def apply(self, now: float, raw: int, current: int) -> int:
        raw = min(max(raw, self.min_replicas), self.max_replicas)
        self.recommendations.append((now, raw))
        while self.recommendations and now - self.recommendations[0][0] > self.down_stabilization_seconds:
            self.recommendations.popleft()
        if raw > current:
            return min(raw, max(2 * current, current + 4))
        return min(current, max(r for _, r in self.recommendations))


@dataclass
class KedaWaitingScaler:
    min_replicas: int
    max_replicas: int
    waiting_per_replica: float = 5.0
    interval_seconds: float = 30.0
    name: str = "KEDA waiting (30s/300s)"
    hpa: _HpaBehaviour = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = _HpaBehaviour(self.min_replicas, self.max_replicas)

    def desired(self, now: float, observation: Observation, counts: ReplicaCounts) -> int:
        if not isinstance(observation, Signals):
            return counts.desired
        raw = math.ceil(observation.waiting_requests / self.waiting_per_replica)
        return self.hpa.apply(now, raw, counts.desired)


@dataclass
class HpaConcurrencyScaler:
    min_replicas: int
    max_replicas: int
    concurrency_per_replica: float = 32.0
    interval_seconds: float = 15.0
    name: str = "HPA concurrency"
    hpa: _HpaBehaviour = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = _HpaBehaviour(self.min_replicas, self.max_replicas)

    def desired(self, now: float, observation: Observation, counts: ReplicaCounts) -> int:
        if not isinstance(observation, Signals):
            return counts.desired
        concurrency = observation.running_requests + observation.waiting_requests
        ratio = concurrency / (self.concurrency_per_replica * max(counts.desired, 1))
        raw = (
            counts.desired
            if abs(ratio - 1.0) <= 0.1
            else math.ceil(concurrency / self.concurrency_per_replica)
        )
        return self.hpa.apply(now, raw, counts.desired)


@dataclass
class KaitoStepScaler:
    min_replicas: int
    max_replicas: int
    waiting_per_replica: float = 5.0
    step_period_seconds: float = 300.0
    interval_seconds: float = 15.0
    name: str = "Kaito step (+1/300s)"
    last_change: float = -math.inf

    def desired(self, now: float, observation: Observation, counts: ReplicaCounts) -> int:
        if not isinstance(observation, Signals) or now - self.last_change < self.step_period_seconds:
            return counts.desired
        per_replica = observation.waiting_requests / max(counts.ready, 1)
        target = counts.desired
        if per_replica > self.waiting_per_replica:
            target = min(counts.desired + 1, self.max_replicas)
        elif observation.waiting_requests == 0:
            target = max(counts.desired - 1, self.min_replicas)
        if target != counts.desired:
            self.last_change = now
        return target


def all_scalers(min_replicas: int, max_replicas: int, slo: SloTargets) -> list[Scaler]:
    targets = Targets(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        slo=slo,
        gpus_per_replica=1,
        max_gpus=max_replicas,
        scale_down_stabilization_seconds=300.0,
    )
    return [
        BerthScaler(targets),
        KedaWaitingScaler(min_replicas, max_replicas),
        HpaConcurrencyScaler(min_replicas, max_replicas),
        KaitoStepScaler(min_replicas, max_replicas),
    ]
