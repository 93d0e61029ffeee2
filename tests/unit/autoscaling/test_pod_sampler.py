"""The pod sampler over real sockets: replicas serving the runtime's own /metrics are read; one that
answers 404, garbage, nothing (refuses) or too slowly is a failure with the reason in words, never an
exception; and the status message says which."""

from __future__ import annotations

import pytest
from replica_stub import free_port, serve_replicas

from berth_operator.api.autoscaling import PodSamplingSpec
from berth_operator.autoscaling.live import PodSample
from berth_operator.autoscaling.pod_sampler import metrics_url, round_timeout_seconds, sample_pods
from berth_operator.autoscaling.sampling_report import (
    PodAddress,
    SampleFailure,
    SampleRound,
    sampling_message,
    with_pod_sampling,
)

SERVING, NOT_FOUND, GARBAGE, SLOW, NOBODY = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


async def test_every_replica_is_read_and_every_failure_is_named() -> None:
    with serve_replicas([SERVING, NOT_FOUND, GARBAGE, SLOW]) as replicas:
        replicas[SERVING].serving(running=6, waiting=3)
        replicas[NOT_FOUND].status, replicas[NOT_FOUND].body = 404, "not found"
        replicas[GARBAGE].body = "this is not { the text format\n"
        replicas[SLOW].serving(running=1, waiting=0)
        replicas[SLOW].delay_seconds = 3.0
        pods = [
            PodAddress("chat-a", SERVING),
            PodAddress("chat-b", NOT_FOUND),
            PodAddress("chat-c", GARBAGE),
            PodAddress("chat-d", SLOW),
            PodAddress("chat-e", NOBODY),
        ]
        result = await sample_pods(pods, replicas.port, timeout_seconds=0.3)

    port = replicas.port
    assert result.samples == (PodSample(running=6.0, waiting=3.0),)
    failures = {failure.pod: failure for failure in result.failures}
    assert list(failures) == ["chat-b", "chat-c", "chat-d", "chat-e"]
    assert failures["chat-b"] == SampleFailure("chat-b", f"{NOT_FOUND}:{port}", "HTTP 404 from /metrics")
    assert failures["chat-c"].address == f"{GARBAGE}:{port}"
    assert failures["chat-c"].error.startswith("not the Prometheus text format")
    assert failures["chat-d"].error == "timed out after 0.3s"
    assert failures["chat-e"].error == "connection refused"
    assert not result.answering and result.asked == 5


async def test_a_replica_whose_metrics_lack_the_gauges_is_named_with_what_is_missing() -> None:
    with serve_replicas([SERVING]) as replicas:
        replicas[SERVING].body = "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.5\n"
        result = await sample_pods([PodAddress("chat-a", SERVING)], replicas.port, timeout_seconds=1.0)
    assert result.samples == ()
    assert "no vllm:num_requests_running or vllm:num_requests_waiting gauge" in result.failures[0].error


async def test_no_pods_is_an_empty_round_without_a_request() -> None:
    result = await sample_pods([], free_port(), timeout_seconds=1.0)
    assert result == SampleRound(samples=(), failures=()) and result.answering


@pytest.mark.parametrize(("interval", "timeout"), [(2, 1.0), (1, 0.5), (60, 1.0)])
def test_a_round_waits_at_most_a_second_and_half_the_interval(interval: int, timeout: float) -> None:
    assert round_timeout_seconds(interval) == timeout


def test_an_ipv6_pod_address_is_bracketed() -> None:
    assert metrics_url("fd00::5", 8001) == "http://[fd00::5]:8001/metrics"
    assert metrics_url("10.0.0.5", 8001) == "http://10.0.0.5:8001/metrics"


def test_the_status_message_says_who_answered_and_who_did_not() -> None:
    sampling = PodSamplingSpec()
    answered = SampleRound(samples=(PodSample(1, 0), PodSample(2, 1)), failures=())
    assert (
        sampling_message(sampling, 8001, answered) == "2 of 2 Ready replicas answered on port 8001 every 2s"
    )
    silent = SampleRound(
        samples=(), failures=(SampleFailure("chat-abc", "10.0.0.5:8001", "timed out after 1s"),)
    )
    assert sampling_message(sampling, 8001, silent) == (
        "0 of 1 Ready replicas answered on port 8001 every 2s (chat-abc 10.0.0.5:8001: timed out after 1s); "
        "scale-up waits for Prometheus"
    )
    partly = SampleRound(samples=(PodSample(1, 0),), failures=silent.failures)
    assert sampling_message(sampling, 8001, partly).endswith("; their load waits for Prometheus")
    assert sampling_message(PodSamplingSpec(enabled=False), 8001, answered) == "disabled"
    assert sampling_message(sampling, 8001, None).startswith("no round yet")
    assert (
        sampling_message(sampling, 8001, SampleRound((), ()))
        == "no Ready replicas to read on port 8001 (every 2s)"
    )
    many = SampleRound(
        samples=(),
        failures=tuple(SampleFailure(f"chat-{i}", f"10.0.0.{i}:8001", "refused") for i in range(5)),
    )
    assert "chat-2" in sampling_message(sampling, 8001, many)
    assert "chat-3" not in sampling_message(sampling, 8001, many) and "2 more" in sampling_message(
        sampling, 8001, many
    )


def test_the_message_joins_the_autoscalers_status_without_dropping_its_fields() -> None:
    status = {"autoscaling": {"lastEvaluationTime": "2027-01-15T08:00:00Z"}, "conditions": []}
    assert with_pod_sampling(status, "disabled") == {
        "autoscaling": {"lastEvaluationTime": "2027-01-15T08:00:00Z", "podSampling": "disabled"},
        "conditions": [],
    }
    assert "podSampling" not in status["autoscaling"]
