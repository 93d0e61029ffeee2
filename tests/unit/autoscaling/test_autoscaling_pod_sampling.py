"""Pod sampling through the operator: the daemon's round lists the resource's Ready replicas on the
in-memory API, reads their real /metrics over loopback sockets, and -- only when the gauges rose
beyond noise and the evaluation on them scales up -- acts as a regular evaluation does (the count in
status.desiredReplicas, the Deployment, the status, the Event). Anything else writes nothing at all.
Replicas that do not answer are named in status.autoscaling.podSampling and, once, in a Warning
Event."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from autoscaling_factories import serving
from handler_support import Clock, answer, deployment_replicas, resource_status, store
from prometheus_stub import PrometheusStub
from replica_stub import Replicas, serve_replicas

from berth_operator.autoscaling.policy import Action
from berth_operator.builders.labels import selector_labels
from berth_operator.handlers.autoscaling import SampleRounds, evaluate_observed
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import observe
from berth_operator.handlers.pod_sampling import PodSamplingMemory, ready_replica_address
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import EVENT, INFERENCE_DEPLOYMENT

FIRST, SECOND, CANARY, OTHERS, UNREADY = "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"
QUIET = serving(2000.0, replicas=2, running_requests=10.0, running_requests_average=10.0)
"""What Prometheus last saw: two replicas, 10 requests in flight, healthy."""


def pod(
    name: str, ip: str, *, ready: bool = True, instance: str = "chat", revision: str = "abc"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {**selector_labels(instance), "berth.dev/revision": revision},
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    with serve_replicas([FIRST, SECOND, CANARY, OTHERS, UNREADY]) as served:
        yield served


def setup(api: InMemoryKubeApi, stub: PrometheusStub, replicas: Replicas, **autoscaling: Any) -> None:
    """chat at 2 replicas (both Ready and serving), its metrics port the stub replicas' port, and pods
    that are not its Ready replicas beside them: another resource's, and one not Ready."""
    store(api, stub.url, replicas=2, serving={"metricsPort": replicas.port}, **autoscaling)
    api.put(pod("chat-a", FIRST))
    api.put(pod("chat-b", SECOND))
    api.put(pod("other-a", OTHERS, instance="other"))
    api.put(pod("chat-c", UNREADY, ready=False))
    for ip in (FIRST, SECOND, OTHERS, UNREADY):
        replicas[ip].serving(running=5, waiting=0)
    answer(stub, asdict(QUIET))


async def regular_evaluation(
    context: OperatorContext, api: InMemoryKubeApi, memory: PodSamplingMemory
) -> None:
    owner = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert owner is not None
    evaluation = await evaluate_observed(context, observe(owner, context.settings), memory=memory)
    assert evaluation is not None and evaluation.decision.action is Action.HOLD


def events(api: InMemoryKubeApi, reason: str) -> list[dict[str, Any]]:
    return [
        event
        for event in api.objects.values()
        if event.get("kind") == EVENT.kind and event.get("reason") == reason
    ]


async def test_samples_that_rose_scale_up_at_once_through_the_regular_path(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub, replicas: Replicas
) -> None:
    setup(api, stub, replicas)
    memory = PodSamplingMemory()
    await regular_evaluation(context, api, memory)
    assert memory.last_signals == QUIET and memory.period_seconds() == 2.0
    assert resource_status(api)["autoscaling"]["podSampling"].startswith("no round yet")

    for ip in (FIRST, SECOND):
        replicas[ip].serving(running=60, waiting=30)
    replicas[OTHERS].serving(running=900, waiting=900)  # another resource's replica: not ours to count
    rounds = SampleRounds(context, memory, "ml", "chat")
    clock.advance(2)
    writes = len(api.writes)
    assert await rounds.run_round() is None  # one round is not a rise that held: it may be a spike
    assert len(api.writes) == writes
    clock.advance(2)
    evaluation = await rounds.run_round()  # the rise held for a sampling interval

    assert evaluation is not None and evaluation.decision.action is Action.SCALE_UP
    scaled_to = evaluation.decision.replicas
    assert scaled_to > 2
    assert resource_status(api)["desiredReplicas"] == scaled_to
    assert deployment_replicas(api) == scaled_to
    status = resource_status(api)["autoscaling"]
    assert (status["lastDecision"]["from"], status["lastDecision"]["to"]) == (2, scaled_to)
    assert status["podSampling"] == f"2 of 2 Ready replicas answered on port {replicas.port} every 2s"
    assert len(events(api, "ScaledUp")) == 1
    assert replicas[OTHERS].requests == 0 and replicas[UNREADY].requests == 0


async def test_samples_that_did_not_rise_write_nothing(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub, replicas: Replicas
) -> None:
    setup(api, stub, replicas)
    memory = PodSamplingMemory()
    await regular_evaluation(context, api, memory)
    writes = len(api.writes)
    for ip in (FIRST, SECOND):
        replicas[ip].serving(running=6, waiting=1)  # 14 in flight: within the noise of 10
    clock.advance(2)
    assert await SampleRounds(context, memory, "ml", "chat").run_round() is None
    assert len(api.writes) == writes
    assert replicas[FIRST].requests == 1  # it was read


async def test_a_rise_whose_evaluation_does_not_scale_up_writes_nothing(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub, replicas: Replicas
) -> None:
    setup(api, stub, replicas, maxReplicas=2)  # already at the most
    memory = PodSamplingMemory()
    await regular_evaluation(context, api, memory)
    before, writes = resource_status(api), len(api.writes)
    for ip in (FIRST, SECOND):
        replicas[ip].serving(running=60, waiting=30)
    rounds = SampleRounds(context, memory, "ml", "chat")
    for _ in range(2):  # a rise that held
        clock.advance(2)
        assert await rounds.run_round() is None
    assert len(api.writes) == writes and resource_status(api) == before
    assert deployment_replicas(api) == 2


async def test_no_round_without_a_prometheus_observation_or_when_disabled(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub, replicas: Replicas
) -> None:
    setup(api, stub, replicas, podSampling={"enabled": False})
    memory = PodSamplingMemory()
    await regular_evaluation(context, api, memory)
    assert memory.period_seconds() is None
    assert resource_status(api)["autoscaling"]["podSampling"] == "disabled"
    memory = PodSamplingMemory()
    assert memory.period_seconds() is None  # nothing observed yet
    replicas[FIRST].serving(running=60, waiting=30)
    assert await SampleRounds(context, memory, "ml", "chat").run_round() is None


async def test_replicas_that_do_not_answer_are_reported_once_and_in_status(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub, replicas: Replicas
) -> None:
    setup(api, stub, replicas)
    api.put(pod("chat-b", "127.0.0.19"))  # its address answers nothing
    memory = PodSamplingMemory()
    await regular_evaluation(context, api, memory)
    rounds = SampleRounds(context, memory, "ml", "chat")
    await rounds.run_round()
    await rounds.run_round()

    expected = (
        f"1 of 2 Ready replicas answered on port {replicas.port} every 2s "
        f"(chat-b 127.0.0.19:{replicas.port}: connection refused); their load waits for Prometheus"
    )
    failed = events(api, "PodSamplingFailed")
    assert [(event["type"], event["message"]) for event in failed] == [("Warning", expected)]
    await regular_evaluation(context, api, memory)
    assert resource_status(api)["autoscaling"]["podSampling"] == expected

    api.put(pod("chat-b", SECOND))  # answering again, then not: a second Event
    await rounds.run_round()
    assert memory.answering
    api.put(pod("chat-b", "127.0.0.19"))
    await rounds.run_round()
    assert len(events(api, "PodSamplingFailed")) == 2


async def test_a_canarys_replicas_are_the_resources_replicas_too(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub, replicas: Replicas
) -> None:
    setup(api, stub, replicas)
    api.put(pod("chat-canary-a", CANARY, revision="def"))
    memory = PodSamplingMemory()
    await regular_evaluation(context, api, memory)
    result = await SampleRounds(context, memory, "ml", "chat").run_round()
    assert result is None
    assert memory.last_round is not None and memory.last_round.asked == 3
    assert replicas[CANARY].requests == 1


def test_a_ready_replica_is_running_ready_addressed_and_not_terminating() -> None:
    assert ready_replica_address(pod("a", "10.0.0.5")) is not None
    assert ready_replica_address(pod("a", "10.0.0.5", ready=False)) is None
    unaddressed = pod("a", "")
    assert ready_replica_address(unaddressed) is None
    pending = pod("a", "10.0.0.5")
    pending["status"]["phase"] = "Pending"
    assert ready_replica_address(pending) is None
    leaving = pod("a", "10.0.0.5")
    leaving["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    assert ready_replica_address(leaving) is None
