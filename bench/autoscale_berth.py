"""berth's autoscaler in the simulation, driven the way the operator's handler drives it.

Every evaluation goes through the status, as in the operator: the status the API server stores
(wire form, JSON) is read back and parsed, `berth_operator.autoscaling.evaluation.evaluate` rebuilds
the policy's memory from it and decides, a decision that applies is recorded as
`status.desiredReplicas`, and the autoscaler's share of the status is applied the way server-side
apply does for its field manager: `status.autoscaling` replaced as a whole, the conditions it owns
merged by type. Nothing is carried from one evaluation to the next except that stored status, so the
simulation cannot remember what the operator forgets.

The spec is an InferenceDeployment with the API's defaults (interval, metrics window,
stabilization) and the simulation's bounds and targets; `berth_spec` makes it and the simulation
reads the window and interval from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.autoscale_metrics import MetricStore
from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus
from berth_operator.autoscaling.evaluation import acted_on_live, evaluate, targets_from_spec
from berth_operator.autoscaling.live import PodSample, live_signals, sustained_rise
from berth_operator.autoscaling.policy import DEFAULT_TUNING, Decision, ReplicaCounts
from berth_operator.autoscaling.signals import MetricsUnavailable, Observation, Signals

EPOCH = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
"""Simulated second 0, as the operator's clock would read it."""


def berth_spec(
    min_replicas: int,
    max_replicas: int,
    ttft_ms: int,
    itl_ms: int,
    interval_seconds: int | None = None,
    pod_sampling_seconds: int | None = None,
) -> InferenceDeploymentSpec:
    """An InferenceDeployment of one GPU per replica with autoscaling at the API's defaults (the
    evaluation interval too, unless `interval_seconds` is given; pod sampling at its interval, unless
    `pod_sampling_seconds` is given: 0 turns it off)."""
    interval = {} if interval_seconds is None else {"intervalSeconds": interval_seconds}
    if pod_sampling_seconds is not None:
        sampling = {"enabled": pod_sampling_seconds > 0, "intervalSeconds": max(pod_sampling_seconds, 1)}
        interval["podSampling"] = sampling
    return InferenceDeploymentSpec.model_validate(
        {
            "model": {"name": "llama-8b", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "resources": {"gpu": {"count": 1}},
            "runtime": {"maxNumBatchedTokens": 512},
            "replicas": min_replicas,
            "autoscaling": {
                "enabled": True,
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                **interval,
                "slo": {
                    "timeToFirstTokenP95Milliseconds": ttft_ms,
                    "interTokenLatencyP95Milliseconds": itl_ms,
                },
            },
        }
    )


def apply_autoscaler_status(stored: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """`stored` after the autoscaler's server-side apply of `applied`: it owns status.autoscaling as
    a whole (what it leaves out is removed) and its conditions, merged by type."""
    conditions = {condition["type"]: condition for condition in stored.get("conditions", [])}
    conditions.update({condition["type"]: condition for condition in applied.get("conditions", [])})
    return {**stored, "autoscaling": applied["autoscaling"], "conditions": list(conditions.values())}


@dataclass(frozen=True)
class Step:
    """One evaluation as the operator would see it: the time, the observation, the replica counts."""

    seconds: float
    observation: Observation
    counts: ReplicaCounts
    live: bool = False
    """An evaluation on the replicas' own gauges between two Prometheus evaluations (pod sampling)."""


def steps_to_json(steps: list[Step]) -> list[dict[str, Any]]:
    """Steps as JSON values: the signals by name, or why there were none."""
    return [
        {
            "seconds": step.seconds,
            "desired": step.counts.desired,
            "ready": step.counts.ready,
            "signals": asdict(observation) if isinstance(observation, Signals) else None,
            "unavailable": observation.reason if isinstance(observation, MetricsUnavailable) else None,
            "live": step.live,
        }
        for step in steps
        for observation in (step.observation,)
    ]


def steps_from_json(values: list[dict[str, Any]]) -> list[Step]:
    return [
        Step(
            seconds=value["seconds"],
            observation=(
                Signals(**value["signals"])
                if value["signals"] is not None
                else MetricsUnavailable(value["unavailable"])
            ),
            counts=ReplicaCounts(desired=value["desired"], ready=value["ready"]),
            live=value.get("live", False),
        )
        for value in values
    ]


def measured_cold_start(seconds: float) -> dict[str, Any]:
    """status.coldStart as the operator's status sync writes it for replicas that take `seconds`
    from creation to Ready (all of it loading, in this simulation)."""
    return {
        "revision": "simulated",
        "pods": 1,
        "schedulingSeconds": 0.0,
        "startupSeconds": seconds,
        "totalSeconds": seconds,
        "slowestSeconds": seconds,
    }


@dataclass
class BerthScaler:
    spec: InferenceDeploymentSpec
    name: str = "berth"
    stored: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    """Every evaluation's inputs, for replaying them elsewhere (the one-path test's recording)."""
    decisions: list[Decision] = field(default_factory=list)
    cold_start_seconds: float | None = None
    """The replicas' cold start, as status.coldStart holds it once the operator has measured one (the
    policy plans around it); None, as before any replica started."""

    def __post_init__(self) -> None:
        if self.cold_start_seconds is not None and "coldStart" not in self.stored:
            self.stored = {**self.stored, "coldStart": measured_cold_start(self.cold_start_seconds)}

    @property
    def interval_seconds(self) -> float:
        return float(self.spec.autoscaling.interval_seconds)

    next_evaluation_seconds: float = 0.0
    """When the last evaluation said the next is due (simulated seconds), as the operator's daemon
    waits for it: just after the next scrape lands."""

    last_signals: Signals | None = None
    previous_samples: list[PodSample] | None = None
    """The last pod-sampling round's samples, which a rise must have shown too (`sustained_rise`)."""
    """The last evaluation's Prometheus observation, as the operator's daemon keeps it between
    evaluations for the pod samples to be read against."""

    @property
    def sampling_seconds(self) -> float | None:
        """Seconds between reads of the replicas' own gauges; None when pod sampling is off."""
        sampling = self.spec.autoscaling.pod_sampling
        return float(sampling.interval_seconds) if sampling.enabled else None

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int:
        observation = store.signals(now)
        self.last_signals = observation if isinstance(observation, Signals) else None
        if self.last_signals is None:
            self.previous_samples = None  # no rounds until Prometheus answers, as in the daemon
        return self.evaluate(Step(now, observation, counts))

    def sample(self, now: float, samples: list[PodSample], counts: ReplicaCounts) -> int:
        """The replicas' gauges read between evaluations, as the operator's daemon reads them: an
        evaluation with them when they rose beyond noise in this round and the last
        (`sustained_rise`), acted on only if it scales up."""
        previous, self.previous_samples = self.previous_samples, samples
        if self.last_signals is None:
            return counts.desired
        held = sustained_rise(self.last_signals, previous, samples, DEFAULT_TUNING)
        if held is None:
            return counts.desired
        return self.evaluate(Step(now, live_signals(self.last_signals, held), counts, live=True))

    def evaluate(self, step: Step) -> int:
        """One evaluation through the status round trip; the count the Deployment is driven to. A
        live one (pod samples) that does not scale up leaves nothing behind, as in the operator."""
        previous = InferenceDeploymentStatus.model_validate(json.loads(json.dumps(self.stored)))
        clock = EPOCH + timedelta(seconds=round(step.seconds, 3))
        targets = targets_from_spec(self.spec)
        evaluation = evaluate(step.observation, targets, step.counts, previous, clock, self.interval_seconds)
        decision = evaluation.decision
        if step.live and not acted_on_live(decision):
            return step.counts.desired
        self.steps.append(step)
        if not step.live:
            self.next_evaluation_seconds = (evaluation.next_evaluation_time - EPOCH).total_seconds()
        self.decisions.append(decision)
        if decision.apply:
            self.stored = {**self.stored, "desiredReplicas": decision.replicas}
            self.reasons.append(f"t={step.seconds:.0f}s {decision.reason}")
        self.stored = apply_autoscaler_status(json.loads(json.dumps(self.stored)), evaluation.status)
        return decision.replicas if decision.apply else step.counts.desired
