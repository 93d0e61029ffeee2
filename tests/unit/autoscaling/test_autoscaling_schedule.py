"""When the next evaluation is due: just after the next scrape lands, reached within a few
evaluations from any phase, and never more often than once per interval on average -- whatever the
scrape interval -- so that status writes do not grow. The handler hands the due time to its daemon."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pytest
from handler_support import Clock, answer, store
from prometheus_stub import PrometheusStub

from berth_operator.autoscaling.evaluation import SCRAPE_LANDING_SECONDS, next_evaluation_seconds
from berth_operator.autoscaling.signals import MetricsUnavailable, Signals
from berth_operator.handlers.autoscaling import evaluate_observed
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import observe
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT

HEALTHY = {
    "ttft_p95_seconds": 0.2,
    "itl_p95_seconds": 0.02,
    "waiting_requests": 0.0,
    "running_requests": 4.0,
    "running_requests_average": 4.0,
    "kv_cache_usage": 0.2,
    "prompt_tokens_per_second": 0.0,
    "generation_tokens_per_second": 400.0,
    "requests_per_second": 1.0,
    "waiting_growth_per_second": 0.0,
    "serving_replicas_average": 1.0,
}


def observed(sample_age_seconds: float) -> Signals:
    return Signals(**HEALTHY, reporting_replicas=1, sample_age_seconds=sample_age_seconds)


@pytest.mark.parametrize(
    ("age", "delay"),
    [
        (SCRAPE_LANDING_SECONDS, 10.0),  # in phase: one interval
        (0.0, 10.0 + SCRAPE_LANDING_SECONDS),  # the sample is still landing: wait for it
        (2.0, 9.0),  # a little late: a little early next time
        (9.0, 2.0 + 10.0),  # the next scrape lands too soon (2 s): the one after it
        (4.0, 17.0),  # never sooner than three quarters of an interval
    ],
)
def test_the_next_evaluation_moves_towards_just_after_a_scrape(age: float, delay: float) -> None:
    assert next_evaluation_seconds(observed(age), 10.0) == pytest.approx(delay)


def test_without_metrics_there_is_no_phase_to_follow() -> None:
    assert next_evaluation_seconds(MetricsUnavailable("no series"), 30.0) == 30.0


def evaluation_times(scrape_seconds: float, phase: float, start: float, until: float) -> list[float]:
    """Evaluations from `start`, each waiting what the last one said, against scrapes every
    `scrape_seconds` at `phase` (seconds past a multiple of it)."""
    times, now = [], start
    while now < until:
        times.append(now)
        newest = math.floor((now - phase) / scrape_seconds) * scrape_seconds + phase
        now += next_evaluation_seconds(observed(now - newest), 10.0)
    return times


@pytest.mark.parametrize("start", [0.0, 2.7, 5.0, 8.9])
def test_from_any_phase_evaluations_lock_on_just_after_the_scrapes(start: float) -> None:
    times = evaluation_times(10.0, phase=3.3, start=start, until=600.0)
    settled = times[3:]
    assert all(round((t - 3.3) % 10.0, 6) == SCRAPE_LANDING_SECONDS for t in settled)
    assert len(times) <= 61  # one per interval, as a fixed timer would: no more status writes


@pytest.mark.parametrize("scrape_seconds", [5.0, 15.0, 30.0, 7.0])
def test_another_scrape_interval_never_makes_evaluations_more_frequent(scrape_seconds: float) -> None:
    times = evaluation_times(scrape_seconds, phase=1.7, start=0.4, until=3600.0)
    assert len(times) <= 361
    assert min(later - earlier for earlier, later in itertools.pairwise(times)) >= 7.5 - 1e-9


async def test_the_handler_hands_its_daemon_the_time_just_after_the_next_scrape(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub
) -> None:
    store(api, stub.url)
    answer(stub, {**HEALTHY, "reporting_replicas": 1, "sample_age_seconds": 3})
    owner = await api.get(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert owner is not None
    evaluation = await evaluate_observed(context, observe(owner, context.settings))
    assert evaluation is not None
    # The newest sample is 3 s old: the next is due in 7 s, and lands 1 s after that.
    assert evaluation.next_evaluation_time == clock.now + timedelta(seconds=7 + SCRAPE_LANDING_SECONDS)
