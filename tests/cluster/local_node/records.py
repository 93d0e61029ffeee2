"""What the agent knows about one container, as immutable values the status is computed from.

Why: the pod worker mutates its bookkeeping from several threads (process waiters, probes); the
status derivation must see one consistent moment. A ``ContainerSnapshot`` is that moment, and the
pure functions in ``status`` turn snapshots into the API's shapes, so they are tested without
processes or a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 with whole seconds, as the API server stores ``metav1.Time``."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 with microseconds, as ``metav1.MicroTime`` (Lease renewTime, Event series)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: str


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    container_id: str
    message: str = ""
    signal: int | None = None


ContainerState = Waiting | Running | Terminated


def termination_reason(exit_code: int) -> str:
    """The reason a container runtime gives a finished container: Completed for 0, else Error."""
    return "Completed" if exit_code == 0 else "Error"


@dataclass(frozen=True)
class ContainerSnapshot:
    """One container at one moment, in the terms of ``v1.ContainerStatus``."""

    name: str
    image: str
    state: ContainerState
    last_state: Terminated | None = None
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str = ""

    @property
    def succeeded(self) -> bool:
        return isinstance(self.state, Terminated) and self.state.exit_code == 0
