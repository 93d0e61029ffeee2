"""The wire form of `status.economics`: the figures of each window, rounded for people, what they were
computed with (GPUs per replica, price, targets), and one message naming every absent figure and why.

Pure: readings (or why there are none) and the spec's inputs go in, a dict comes out, which the
handler applies under its own field manager. Fields this writer leaves out are removed by the API
server, so figures that can no longer be computed disappear instead of going stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api.economics_status import EconomicsStatus, EconomicsWindow
from berth_operator.economics.figures import (
    EconomicsUnavailable,
    LatencyTargets,
    WindowFigures,
    WindowReadings,
    window_figures,
)
from berth_operator.economics.pricing import NoPrice, Price, resolve_price
from berth_operator.economics.queries import LAST_DAY, LAST_HOUR, Window

MESSAGE_LIMIT = 4096
NO_PROMETHEUS = (
    "no Prometheus to query: set spec.autoscaling.prometheus.url or the operator's BERTH_PROMETHEUS_URL"
)


@dataclass(frozen=True)
class EconomicsInputs:
    """What the figures are computed with, from the spec and the operator's settings."""

    gpus_per_replica: int
    gpu_product: str | None
    price: Price | NoPrice
    ttft_target_milliseconds: int | None
    itl_target_milliseconds: int | None

    @property
    def targets(self) -> LatencyTargets:
        def seconds(milliseconds: int | None) -> float | None:
            return None if milliseconds is None else milliseconds / 1000

        return LatencyTargets(
            ttft_seconds=seconds(self.ttft_target_milliseconds),
            itl_seconds=seconds(self.itl_target_milliseconds),
        )


def inputs_from_spec(
    spec: InferenceDeploymentSpec, operator_prices: Mapping[str, float], operator_currency: str | None
) -> EconomicsInputs:
    slo = spec.autoscaling.slo
    return EconomicsInputs(
        gpus_per_replica=spec.resources.gpu.count,
        gpu_product=spec.resources.gpu.product,
        price=resolve_price(spec, operator_prices, operator_currency),
        ttft_target_milliseconds=slo.time_to_first_token_p95_milliseconds,
        itl_target_milliseconds=slo.inter_token_latency_p95_milliseconds,
    )


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(min(max(fraction, 0.0), 1.0) * 100, 2)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def window_to_status(figures: WindowFigures) -> EconomicsWindow:
    return EconomicsWindow(
        window_seconds=figures.window.seconds,
        replica_hours=_rounded(figures.replica_hours),
        gpu_hours=_rounded(figures.gpu_hours),
        output_tokens=_whole(figures.output_tokens),
        requests=_whole(figures.requests),
        cost=_rounded(figures.cost),
        cost_per_million_output_tokens=_rounded(figures.cost_per_million_output_tokens),
        ttft_attainment_percent=_percent(figures.ttft_attainment),
        itl_attainment_percent=_percent(figures.itl_attainment),
    )


def _input_notes(inputs: EconomicsInputs) -> list[str]:
    notes = []
    if isinstance(inputs.price, NoPrice):
        notes.append(inputs.price.reason)
    if inputs.ttft_target_milliseconds is None:
        notes.append(
            "no TTFT target (spec.autoscaling.slo.timeToFirstTokenP95Milliseconds), so no TTFT attainment"
        )
    if inputs.itl_target_milliseconds is None:
        notes.append(
            "no ITL target (spec.autoscaling.slo.interTokenLatencyP95Milliseconds), so no ITL attainment"
        )
    return notes


def _message(notes: list[str]) -> str | None:
    if not notes:
        return None
    message = "; ".join(notes)
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


def economics_status(
    readings: Mapping[Window, WindowReadings] | EconomicsUnavailable,
    inputs: EconomicsInputs,
    now: datetime,
    who: str = "",
) -> dict[str, Any]:
    """The complete `status.economics`, in wire form. `who` (namespace/name and the series selector)
    goes into the message when a window has no series at all."""
    price = inputs.price if isinstance(inputs.price, Price) else None
    notes = _input_notes(inputs)
    windows: dict[str, EconomicsWindow | None] = {"last_hour": None, "last_day": None}
    if isinstance(readings, EconomicsUnavailable):
        notes.insert(0, f"no figures: {readings.reason}")
    else:
        for key, window in (("last_hour", LAST_HOUR), ("last_day", LAST_DAY)):
            window_readings = readings.get(window)
            if window_readings is None:
                notes.append(f"{window.label}: not queried")
                continue
            figures = window_figures(
                window, window_readings, inputs.gpus_per_replica, inputs.price, inputs.targets
            )
            if figures.replica_hours is None:
                notes += [f"{window.label}: {note}{f' for {who}' if who else ''}" for note in figures.notes]
                continue
            windows[key] = window_to_status(figures)
            notes += [f"{window.label}: {note}" for note in figures.notes]
    status = EconomicsStatus(
        time=now,
        gpus_per_replica=inputs.gpus_per_replica,
        gpu_product=inputs.gpu_product,
        gpu_hourly_price=None if price is None else price.per_gpu_hour,
        currency=None if price is None else price.currency,
        price_source=None if price is None else price.source,
        ttft_target_milliseconds=inputs.ttft_target_milliseconds,
        itl_target_milliseconds=inputs.itl_target_milliseconds,
        last_hour=windows["last_hour"],
        last_day=windows["last_day"],
        message=_message(notes),
    )
    return status.to_wire()


def no_prometheus_status() -> dict[str, Any]:
    """`status.economics` for a resource with no Prometheus to read: only the message."""
    return EconomicsStatus(message=NO_PROMETHEUS).to_wire()
