"""The observation the rollout plan and shape tests start from: a primary of 4 ready replicas on the
stable revision, the spec asking for the target."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from berth_operator.rollout.observation import RolloutObservation

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
STABLE, TARGET = "stable0001", "target0002"


def observed(**changes: Any) -> RolloutObservation:
    base = RolloutObservation(
        now=NOW,
        target_revision=TARGET,
        desired_replicas=4,
        primary_revision=STABLE,
        primary_replicas=4,
        primary_rolled_out=True,
        primary_ready={STABLE: 4},
    )
    return replace(base, **changes)
