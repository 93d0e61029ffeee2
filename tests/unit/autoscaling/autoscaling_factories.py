"""Builders of policy inputs for the autoscaling unit tests: one place that knows every field, so
each test states only what it is about."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from berth_operator.autoscaling.capacity import SloTargets
from berth_operator.autoscaling.policy import ReplicaCounts, Targets
from berth_operator.autoscaling.signals import Signals
from berth_operator.autoscaling.state import ScalingHistory

SLO = SloTargets(ttft_p95_seconds=0.5, itl_p95_seconds=0.05)
NOW = 1_800_000_000.0
REQUEST_TOKENS = 400.0
"""Generated tokens per request in the policy tests' loads."""


def targets(**overrides: Any) -> Targets:
    base = Targets(
        min_replicas=1,
        max_replicas=8,
        slo=SLO,
        gpus_per_replica=1,
        max_gpus=8,
        scale_down_stabilization_seconds=300.0,
    )
    return replace(base, **overrides)


def signals(**overrides: Any) -> Signals:
    """A healthy, lightly loaded deployment of one replica: 500 generated tokens/s, 1 request/s."""
    base = Signals(
        ttft_p95_seconds=0.2,
        itl_p95_seconds=0.02,
        waiting_requests=0.0,
        running_requests=4.0,
        running_requests_average=4.0,
        kv_cache_usage=0.2,
        prompt_tokens_per_second=0.0,
        generation_tokens_per_second=500.0,
        requests_per_second=1.0,
        waiting_growth_per_second=0.0,
        reporting_replicas=1,
        serving_replicas_average=1.0,
        sample_age_seconds=5.0,
    )
    return replace(base, **overrides)


def serving(tokens_per_second: float, replicas: int = 1, **overrides: Any) -> Signals:
    """`replicas` replicas generating `tokens_per_second` in requests of `REQUEST_TOKENS` tokens each;
    `overrides` add the queue, latencies or any other field."""
    return signals(
        generation_tokens_per_second=tokens_per_second,
        requests_per_second=tokens_per_second / REQUEST_TOKENS,
        reporting_replicas=replicas,
        serving_replicas_average=float(replicas),
        **overrides,
    )


def steady(replicas: int) -> ReplicaCounts:
    """A Deployment at `replicas`, all of them Ready."""
    return ReplicaCounts(desired=replicas, ready=replicas)


def learned(ceiling: float | None = 1000.0, floor: float | None = None, **overrides: Any) -> ScalingHistory:
    """History of an autoscaler that has run for a long while and knows the replica's capacity."""
    return replace(ScalingHistory(capacity_ceiling=ceiling, capacity_floor=floor), **overrides)
