"""One path: the simulation decides what the operator decides. A recorded sequence of evaluations
(the signals berth saw, second by second, in the simulation's burst trace, and the replicas Ready)
is replayed through the simulation's harness and through the operator's handler on the in-memory
API, with its Prometheus queries answered over a real socket; every decision -- count, action,
reason with its numbers -- must be the same. Both rebuild the policy's memory from the status
alone, so a memory the simulation kept and the operator lost would show here as a difference.

The recording is `python -m bench.autoscale_sim --trace "burst 5x" --record PATH`, cut to the
evaluations from the burst's start to the scale-in after it (data/burst_evaluations.json). It is
replayed twice: before any cold start was measured, and with one in status.coldStart, which the
policy plans around.

Live steps (pod sampling: an evaluation on the replicas' own gauges between two Prometheus ones,
recorded only when it was acted on) go through the simulation's live path and through the daemon's
(`act_on_samples`): the replicas' samples are rebuilt from the step's observation (as many replicas
as reported, the first holding the totals), read against the last regular evaluation's observation,
which the operator keeps in its pod-sampling memory as the daemon does."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from handler_support import START, Clock, answer, set_deployment, store
from prometheus_stub import PrometheusStub

from bench.autoscale_berth import BerthScaler, Step, berth_spec, measured_cold_start, steps_from_json
from berth_operator.autoscaling.live import PodSample, live_signals
from berth_operator.autoscaling.policy import Action, ReplicaCounts
from berth_operator.autoscaling.signals import Signals
from berth_operator.handlers.autoscaling import act_on_samples, evaluate_observed
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import observe
from berth_operator.handlers.pod_sampling import PodSamplingMemory
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT

RECORDING = Path(__file__).parent / "data" / "burst_evaluations.json"
SPEC = berth_spec(min_replicas=1, max_replicas=16, ttft_ms=500, itl_ms=50)


@dataclass(frozen=True)
class Decided:
    replicas: int
    action: Action
    reason: str


def recorded_steps() -> list[Step]:
    steps = steps_from_json(json.loads(RECORDING.read_text()))
    assert all(isinstance(step.observation, Signals) for step in steps)
    return steps


NOT_ACTED_ON = Decided(-1, Action.HOLD, "a live evaluation not acted on: nothing written")


def samples_of(observation: Signals) -> list[PodSample]:
    """Pod samples that make `observation`'s gauges: its reporting replicas, the first holding the
    totals."""
    rest = [PodSample(running=0.0, waiting=0.0)] * (observation.reporting_replicas - 1)
    return [PodSample(observation.running_requests, observation.waiting_requests), *rest]


def through_the_simulation(steps: list[Step], cold_start_seconds: float | None) -> list[Decided]:
    scaler = BerthScaler(SPEC, cold_start_seconds=cold_start_seconds)
    desired, decided = steps[0].counts.desired, []
    for step in steps:
        counts = ReplicaCounts(desired=desired, ready=min(step.counts.ready, desired))
        acted = len(scaler.decisions)
        desired = scaler.evaluate(Step(step.seconds, step.observation, counts, live=step.live))
        if len(scaler.decisions) == acted:
            decided.append(NOT_ACTED_ON)
            continue
        decision = scaler.decisions[-1]
        decided.append(Decided(decision.replicas, decision.action, decision.reason))
    return decided


async def through_the_operator(
    steps: list[Step],
    cold_start_seconds: float | None,
    api: InMemoryKubeApi,
    context: OperatorContext,
    clock: Clock,
    stub: PrometheusStub,
) -> list[Decided]:
    spec_autoscaling = SPEC.autoscaling.to_wire()
    spec_autoscaling.pop("prometheus", None)
    cold_start = None if cold_start_seconds is None else measured_cold_start(cold_start_seconds)
    store(api, stub.url, replicas=steps[0].counts.desired, cold_start=cold_start, **spec_autoscaling)
    desired, decided = steps[0].counts.desired, []
    memory = PodSamplingMemory()  # the daemon's, between its evaluations
    for step in steps:
        clock.now = START + timedelta(seconds=step.seconds)
        set_deployment(api, desired, ready=min(step.counts.ready, desired))
        assert isinstance(step.observation, Signals)
        if step.live:
            samples = samples_of(step.observation)
            assert memory.last_signals is not None
            assert live_signals(memory.last_signals, samples) == step.observation
            # The round before showed the level too (the live step is the lower of the two rounds).
            evaluation = await act_on_samples(context, memory, "ml", "chat", samples, samples)
        else:
            answer(stub, asdict(step.observation))
            owner = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
            assert owner is not None
            evaluation = await evaluate_observed(context, observe(owner, context.settings), memory=memory)
            assert evaluation is not None
        if evaluation is None:
            decided.append(NOT_ACTED_ON)
            continue
        decision = evaluation.decision
        desired = decision.replicas if decision.apply else desired
        decided.append(Decided(decision.replicas, decision.action, decision.reason))
    return decided


@pytest.mark.parametrize("cold_start_seconds", [None, 90.0, 240.0])
async def test_the_simulation_and_the_operator_make_the_same_decisions(
    cold_start_seconds: float | None,
    api: InMemoryKubeApi,
    context: OperatorContext,
    clock: Clock,
    stub: PrometheusStub,
) -> None:
    steps = recorded_steps()
    simulated = through_the_simulation(steps, cold_start_seconds)
    operated = await through_the_operator(steps, cold_start_seconds, api, context, clock, stub)
    for index, (simulation, operator) in enumerate(zip(simulated, operated, strict=True)):
        assert simulation == operator, f"evaluation {index} at {steps[index].seconds:.0f}s"
    actions = {decided.action for decided in simulated}
    assert {Action.SCALE_UP, Action.SCALE_DOWN} <= actions  # the recording exercises both ways
    live = [decided for step, decided in zip(steps, simulated, strict=True) if step.live]
    assert any(decided.action is Action.SCALE_UP for decided in live)  # and a live scale-up


def test_the_simulation_reads_its_settings_where_the_operator_does() -> None:
    """The spec's defaults are the simulation's: one evaluation every 10 s over a 60 s window."""
    assert BerthScaler(SPEC).interval_seconds == SPEC.autoscaling.interval_seconds == 10
    assert SPEC.autoscaling.metrics_window_seconds == 60
    assert SPEC.autoscaling.scale_down_stabilization_seconds == 300
