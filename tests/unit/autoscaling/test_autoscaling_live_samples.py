"""Pod sampling, the pure half: the replicas' own gauges parsed from their /metrics text, the rise
that is worth an evaluation between scrapes, the observation they make with the last Prometheus
one, and the rule that only a scale-up decided on them is acted on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from autoscaling_factories import NOW, serving, steady, targets
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from berth_operator.api import InferenceDeploymentStatus
from berth_operator.autoscaling.capacity import Tuning
from berth_operator.autoscaling.evaluation import acted_on_live, evaluate
from berth_operator.autoscaling.live import (
    PodMetricsError,
    PodSample,
    live_signals,
    parse_pod_metrics,
    rose_beyond_noise,
    sustained_rise,
)
from berth_operator.autoscaling.policy import Action, ReplicaCounts

TUNING = Tuning()
CLOCK = datetime.fromtimestamp(NOW, UTC)


def exposition(running: dict[str, float], waiting: dict[str, float]) -> str:
    """A replica's /metrics text as prometheus_client writes it, one series per served model name."""
    registry = CollectorRegistry()
    running_gauge = Gauge("vllm:num_requests_running", "running", ["model_name"], registry=registry)
    waiting_gauge = Gauge("vllm:num_requests_waiting", "waiting", ["model_name"], registry=registry)
    Gauge("vllm:kv_cache_usage_perc", "kv", ["model_name"], registry=registry).labels("chat").set(0.4)
    for model, value in running.items():
        running_gauge.labels(model).set(value)
    for model, value in waiting.items():
        waiting_gauge.labels(model).set(value)
    return generate_latest(registry).decode()


def test_the_gauges_are_read_and_summed_over_the_served_model_names() -> None:
    text = exposition({"chat": 12, "chat-lora": 3}, {"chat": 5, "chat-lora": 0})
    assert parse_pod_metrics(text) == PodSample(running=15.0, waiting=5.0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (exposition({"chat": 1}, {}), "vllm:num_requests_waiting"),
        ("# HELP up x\n# TYPE up gauge\nup 1\n", "vllm:num_requests_running or vllm:num_requests_waiting"),
        ("<html>404 Not Found</html>", "not the Prometheus text format"),
    ],
)
def test_metrics_without_the_gauges_are_refused_naming_what_is_missing(text: str, words: str) -> None:
    with pytest.raises(PodMetricsError, match=words):
        parse_pod_metrics(text)


def test_a_rise_within_the_gauges_noise_is_not_worth_an_evaluation() -> None:
    last = serving(2000.0, running_requests=50.0)
    # At 50 in flight the bar is 4 sigma = 4 * sqrt(50) ~ 28: 75 is noise, 80 a rise.
    assert TUNING.live_noise_sigmas == 4.0
    assert not rose_beyond_noise(last, [PodSample(running=64.0, waiting=11.0)], TUNING)
    assert rose_beyond_noise(last, [PodSample(running=64.0, waiting=16.0)], TUNING)
    # Spread over replicas, the total counts.
    assert rose_beyond_noise(last, [PodSample(40.0, 0.0), PodSample(40.0, 0.0)], TUNING)
    # A quiet deployment needs a few requests more than its noise floor, not a fraction of one.
    quiet = serving(100.0, running_requests=0.0)
    assert not rose_beyond_noise(quiet, [PodSample(running=4.0, waiting=0.0)], TUNING)
    assert rose_beyond_noise(quiet, [PodSample(running=5.0, waiting=0.0)], TUNING)
    # A deep queue on a big deployment: the 15% margin is the bar (15% of 1,000 = 150 > 4 * sqrt(1,000)).
    big = serving(40000.0, replicas=16, running_requests=1000.0)
    assert not rose_beyond_noise(big, [PodSample(running=1140.0, waiting=0.0)], TUNING)
    assert rose_beyond_noise(big, [PodSample(running=1000.0, waiting=160.0)], TUNING)


def test_a_rise_counts_once_it_held_for_a_round_and_at_its_lower_level() -> None:
    last = serving(2000.0, running_requests=50.0)
    spike, high, higher = [PodSample(90.0, 0.0)], [PodSample(64.0, 30.0)], [PodSample(64.0, 60.0)]
    quiet = [PodSample(50.0, 0.0)]
    assert sustained_rise(last, None, spike, TUNING) is None  # the first round: nothing to confirm it
    assert sustained_rise(last, quiet, spike, TUNING) is None  # a spike after a quiet round
    assert sustained_rise(last, spike, quiet, TUNING) is None  # ...and gone at the next
    assert sustained_rise(last, high, higher, TUNING) == high  # an edge: evaluated at what held
    assert sustained_rise(last, higher, high, TUNING) == high


def test_the_live_observation_replaces_the_gauges_and_keeps_the_windows() -> None:
    last = serving(2000.0, replicas=2, running_requests=20.0, ttft_p95_seconds=0.3, sample_age_seconds=8.0)
    live = live_signals(last, [PodSample(40.0, 10.0), PodSample(38.0, 2.0), PodSample(0.0, 0.0)])
    assert (live.running_requests, live.waiting_requests, live.reporting_replicas) == (78.0, 12.0, 3)
    assert live.sample_age_seconds == 0.0
    assert live.generation_tokens_per_second == last.generation_tokens_per_second
    assert live.ttft_p95_seconds == last.ttft_p95_seconds
    assert live.running_requests_average == last.running_requests_average


def test_an_edge_the_scrape_has_not_shown_yet_scales_up_on_the_samples() -> None:
    """Prometheus' last observation: one replica, 10 in flight, healthy. Two seconds later its own
    gauges say 60 running and 30 waiting: the same evaluation on them sizes for the batch slots."""
    spec_targets = targets(batch_slots=64)
    last = serving(2000.0, running_requests=10.0, running_requests_average=10.0)
    status = InferenceDeploymentStatus()
    held = evaluate(last, spec_targets, steady(1), status, CLOCK, 10.0)
    assert held.decision.action is Action.HOLD
    samples = [PodSample(running=60.0, waiting=30.0)]
    assert rose_beyond_noise(last, samples, TUNING)
    live = evaluate(live_signals(last, samples), spec_targets, steady(1), status, CLOCK, 10.0)
    assert live.decision.action is Action.SCALE_UP and live.decision.replicas >= 2
    assert acted_on_live(live.decision)


def test_only_a_scale_up_for_real_is_acted_on() -> None:
    spec_targets = targets(batch_slots=64)
    status = InferenceDeploymentStatus()
    busy = live_signals(serving(2000.0), [PodSample(running=60.0, waiting=30.0)])
    quiet = live_signals(serving(100.0), [PodSample(running=0.0, waiting=0.0)])
    dry = evaluate(busy, targets(batch_slots=64, dry_run=True), steady(1), status, CLOCK, 10.0)
    assert dry.decision.action is Action.SCALE_UP and not acted_on_live(dry.decision)
    outside = evaluate(quiet, spec_targets, ReplicaCounts(desired=12, ready=12), status, CLOCK, 10.0)
    assert outside.decision.action is Action.SCALE_DOWN and not acted_on_live(outside.decision)
    holding = evaluate(quiet, spec_targets, steady(1), status, CLOCK, 10.0)
    assert holding.decision.action is Action.HOLD and not acted_on_live(holding.decision)
