"""Pod sampling's Kopf glue: what the autoscaler's daemon remembers between two evaluations, which
pods are the resource's Ready replicas, and one round of reading them.

Why beside `handlers.autoscaling` and not in it: the daemon's evaluation is one concern, reading the
replicas between evaluations another. The regular evaluation leaves its Prometheus observation, the
spec's sampling settings and the resource's body in a `PodSamplingMemory`; every
`spec.autoscaling.podSampling.intervalSeconds` the daemon runs `sample_replicas` -- list the
resource's pods, keep the Ready ones, read their gauges (`autoscaling.pod_sampler`) -- and hands the
samples to the evaluation (`handlers.autoscaling.act_on_samples`), which evaluates only when they rose
beyond noise. A round that finds replicas not answering where the last one found them answering
records a Warning Event PodSamplingFailed (once, not each round) and logs it; the regular evaluations
write the last round's outcome to status.autoscaling.podSampling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from berth_operator.api.autoscaling import PodSamplingSpec
from berth_operator.autoscaling.pod_sampler import round_timeout_seconds, sample_pods
from berth_operator.autoscaling.sampling_report import PodAddress, SampleRound, sampling_message
from berth_operator.autoscaling.signals import Observation, Signals
from berth_operator.builders import BuildContext
from berth_operator.builders.labels import selector_string
from berth_operator.handlers.context import OperatorContext
from berth_operator.kube import record_event
from berth_operator.kube.kinds import POD

logger = logging.getLogger(__name__)

SAMPLING_FAILED_REASON = "PodSamplingFailed"


@dataclass
class PodSamplingMemory:
    """What the daemon keeps between evaluations for the rounds in between: the last regular
    evaluation's Prometheus observation (None when it had none: no round then), the sampling
    settings and metrics port of the spec it read, the resource as read (for Events), the last
    round, and whether the replicas were answering."""

    last_signals: Signals | None = None
    sampling: PodSamplingSpec | None = None
    metrics_port: int = 8001
    owner: dict[str, Any] | None = None
    last_round: SampleRound | None = None
    answering: bool = True

    def remember_evaluation(
        self, build: BuildContext, owner: dict[str, Any], observation: Observation
    ) -> None:
        """What a regular evaluation leaves for the rounds until the next one."""
        spec = build.spec
        self.sampling = spec.autoscaling.pod_sampling
        self.metrics_port = spec.serving.metrics_port
        self.owner = owner
        self.last_signals = observation if isinstance(observation, Signals) else None
        if self.last_signals is None or not self.sampling.enabled:
            self.last_round = None  # no rounds until Prometheus answers (or sampling is back on)

    def forget(self) -> None:
        """A regular evaluation that did not evaluate (resource gone, spec not accepted): no rounds."""
        self.last_signals = None

    def period_seconds(self) -> float | None:
        """Seconds between rounds; None when there is to be none (disabled, or no observation to read
        the samples against)."""
        if self.sampling is None or not self.sampling.enabled or self.last_signals is None:
            return None
        return float(self.sampling.interval_seconds)

    def round_timeout_seconds(self) -> float:
        """The longest a round waits for the replicas."""
        interval = (
            self.sampling.interval_seconds
            if self.sampling is not None
            else PodSamplingSpec().interval_seconds
        )
        return round_timeout_seconds(interval)

    def message(self, build: BuildContext) -> str:
        """status.autoscaling.podSampling for the spec `build` holds."""
        spec = build.spec
        return sampling_message(spec.autoscaling.pod_sampling, spec.serving.metrics_port, self.last_round)


def ready_replica_address(pod: dict[str, Any]) -> PodAddress | None:
    """A pod's name and IP when it is a Ready replica: Running, its Ready condition True, an IP, and
    not on its way out."""
    metadata, status = pod.get("metadata", {}), pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    ip = status.get("podIP")
    ready = any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )
    return PodAddress(name=str(metadata.get("name", "")), ip=str(ip)) if ready and ip else None


async def ready_replicas(context: OperatorContext, namespace: str, name: str) -> list[PodAddress]:
    """The resource's Ready replicas: its pods by its selector labels (both revisions' during a
    canary), those that are Ready."""
    pods = await context.api.list(POD, namespace, selector_string(name))
    addresses = (ready_replica_address(pod) for pod in pods)
    return [address for address in addresses if address is not None]


async def sample_replicas(
    context: OperatorContext, memory: PodSamplingMemory, namespace: str, name: str
) -> SampleRound:
    """One round: read every Ready replica's gauges, remember the round, and tell (Event, log) when
    replicas stopped answering."""
    pods = await ready_replicas(context, namespace, name)
    result = await sample_pods(pods, memory.metrics_port, memory.round_timeout_seconds())
    memory.last_round = result
    if memory.answering and not result.answering:
        message = sampling_message(memory.sampling or PodSamplingSpec(), memory.metrics_port, result)
        logger.warning("%s/%s: pod sampling: %s", namespace, name, message)
        if memory.owner is not None and await record_event(
            context.api, memory.owner, "Warning", SAMPLING_FAILED_REASON, message, context.clock()
        ):
            context.metrics.writes.labels(kind="Event", verb="create").inc()
    elif not memory.answering and result.answering:
        logger.info("%s/%s: pod sampling: every Ready replica answers again", namespace, name)
    memory.answering = result.answering
    return result
