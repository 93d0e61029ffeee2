"""What one round of pod sampling found, and how the status says it.

Why a module of its own: a replica that does not answer on its metrics port (a NetworkPolicy, a
runtime that does not serve `/metrics`, a KWOK pod whose address is nobody's) leaves its load to
Prometheus, which is slower to see an edge -- a fault nobody would notice unless it is said. The
sampler (`pod_sampler`, the I/O) returns a `SampleRound`; `sampling_message` turns the daemon's last
one into `status.autoscaling.podSampling`, which every evaluation writes (`with_pod_sampling`), and
the same words go into the PodSamplingFailed Event when replicas stop answering.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth_operator.api.autoscaling import PodSamplingSpec
from berth_operator.autoscaling.live import PodSample

MESSAGE_LIMIT = 1024
LISTED_FAILURES = 3
"""Replicas that did not answer named in the message; the rest are counted."""


@dataclass(frozen=True)
class PodAddress:
    """A Ready replica of the resource: its pod's name and IP."""

    name: str
    ip: str


@dataclass(frozen=True)
class SampleFailure:
    """A Ready replica that did not answer with its gauges: the pod, its address, why (in words)."""

    pod: str
    address: str
    error: str


@dataclass(frozen=True)
class SampleRound:
    """One read of every Ready replica's gauges: those that answered, and those that did not."""

    samples: tuple[PodSample, ...]
    failures: tuple[SampleFailure, ...]

    @property
    def asked(self) -> int:
        return len(self.samples) + len(self.failures)

    @property
    def answering(self) -> bool:
        """Every Ready replica asked answered (trivially so with none Ready)."""
        return not self.failures


def sampling_message(sampling: PodSamplingSpec, metrics_port: int, last_round: SampleRound | None) -> str:
    """`status.autoscaling.podSampling`: the last round's outcome in words (at most MESSAGE_LIMIT)."""
    if not sampling.enabled:
        return "disabled"
    every = f"every {sampling.interval_seconds}s"
    if last_round is None:
        message = (
            f"no round yet: the Ready replicas are read on port {metrics_port} {every} once an "
            "evaluation has Prometheus' gauges to compare them with"
        )
    elif last_round.asked == 0:
        message = f"no Ready replicas to read on port {metrics_port} ({every})"
    else:
        answered = len(last_round.samples)
        message = f"{answered} of {last_round.asked} Ready replicas answered on port {metrics_port} {every}"
        if last_round.failures:
            listed = [f"{f.pod} {f.address}: {f.error}" for f in last_round.failures[:LISTED_FAILURES]]
            more = len(last_round.failures) - LISTED_FAILURES
            if more > 0:
                listed.append(f"{more} more")
            waits = "scale-up waits for Prometheus" if answered == 0 else "their load waits for Prometheus"
            message = f"{message} ({'; '.join(listed)}); {waits}"
    return message[:MESSAGE_LIMIT]


def with_pod_sampling(status: dict[str, Any], message: str) -> dict[str, Any]:
    """The autoscaler's share of the status (wire form, as `report.autoscaler_status` makes it) with
    `status.autoscaling.podSampling` set: the autoscaler applies its whole share each time, so a field
    left out would be removed."""
    autoscaling = {**status.get("autoscaling", {}), "podSampling": message}
    return {**status, "autoscaling": autoscaling}
