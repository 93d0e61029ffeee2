"""The policy plans around the resource's measured cold start (status.coldStart), not a constant:
queued work drains over it, and the demand's trend looks that much further ahead."""

from __future__ import annotations

import pytest

from bench.autoscale_berth import measured_cold_start
from berth_operator.api import InferenceDeploymentStatus
from berth_operator.autoscaling.evaluation import COLD_START_BOUNDS_SECONDS, tuning_for
from berth_operator.autoscaling.policy import DEFAULT_TUNING


def status_with_cold_start(seconds: float | None) -> InferenceDeploymentStatus:
    wire = {} if seconds is None else {"coldStart": measured_cold_start(seconds)}
    return InferenceDeploymentStatus.model_validate(wire)


def test_before_any_replica_started_the_defaults_stand() -> None:
    assert tuning_for(status_with_cold_start(None)) == DEFAULT_TUNING


@pytest.mark.parametrize("measured", [25.0, 90.0, 240.0])
def test_a_measured_cold_start_sets_the_backlog_drain_and_the_trend_horizon(measured: float) -> None:
    tuning = tuning_for(status_with_cold_start(measured))
    assert tuning.backlog_drain_seconds == measured
    assumed = DEFAULT_TUNING.backlog_drain_seconds
    assert tuning.trend_horizon_seconds == DEFAULT_TUNING.trend_horizon_seconds + measured - assumed
    # everything else is the default
    assert tuning.scale_up_utilization == DEFAULT_TUNING.scale_up_utilization
    assert tuning.trend_seconds == DEFAULT_TUNING.trend_seconds


@pytest.mark.parametrize(
    ("measured", "planned"), [(0.0, COLD_START_BOUNDS_SECONDS[0]), (7200.0, COLD_START_BOUNDS_SECONDS[1])]
)
def test_an_implausible_measurement_is_planned_within_bounds(measured: float, planned: float) -> None:
    assert tuning_for(status_with_cold_start(measured)).backlog_drain_seconds == planned
