"""`status.economics`: GPU-hours, output tokens, cost and SLO attainment over the last hour and day,
written by the operator's economics timer under its own field manager (formulas in docs/economics.md).
Its own module: the economics figures are one concern of the status, read and written apart from the
rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from berth_operator.api.base import StatusModel

PriceSource = Literal["Spec", "Operator"]


class EconomicsWindow(StatusModel):
    """GPU time, output, cost and SLO attainment over one trailing window, read from Prometheus
    (formulas in docs/economics.md). A figure the metrics cannot support is absent, never zero;
    status.economics.message says why."""

    window_seconds: int = Field(ge=1, description="Length of the trailing window, seconds.")
    replica_hours: float | None = Field(
        default=None,
        ge=0,
        description="Replica-hours: how long each replica's metrics series was present, summed.",
    )
    gpu_hours: float | None = Field(
        default=None, ge=0, description="GPU-hours: replicaHours x GPUs per replica (0 for CPU replicas)."
    )
    output_tokens: int | None = Field(
        default=None, ge=0, description="Output (generated) tokens, summed over replicas."
    )
    requests: int | None = Field(
        default=None, ge=0, description="Requests that got their first token (the TTFT histogram's count)."
    )
    cost: float | None = Field(default=None, ge=0, description="gpuHours x the GPU-hour price.")
    cost_per_million_output_tokens: float | None = Field(
        default=None, ge=0, description="cost / (outputTokens / 1,000,000); absent with no output tokens."
    )
    ttft_attainment_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description=(
            "Share of requests whose time to first token was within the TTFT target, percent (from the "
            "histogram buckets, interpolated linearly inside the bucket holding the target)."
        ),
    )
    itl_attainment_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description=(
            "Share of inter-token intervals within the ITL target, percent (from the histogram "
            "buckets, interpolated linearly inside the bucket holding the target)."
        ),
    )


class EconomicsStatus(StatusModel):
    """GPU economics over the last hour and the last day (written by the operator's economics timer
    under its own field manager, once a minute)."""

    time: datetime | None = Field(default=None, description="When the figures were computed (RFC 3339).")
    gpus_per_replica: int | None = Field(
        default=None, ge=0, description="GPUs per replica that GPU-hours count (resources.gpu.count)."
    )
    gpu_product: str | None = Field(default=None, max_length=63, description="GPU product priced.")
    gpu_hourly_price: float | None = Field(
        default=None, ge=0, description="Price of one GPU-hour used for cost (absent: no price known)."
    )
    currency: str | None = Field(default=None, max_length=16, description="Label of the price's currency.")
    price_source: PriceSource | None = Field(
        default=None,
        description="Spec (spec.cost.gpuHourlyPrice) or Operator (BERTH_GPU_HOURLY_PRICES for the product).",
    )
    ttft_target_milliseconds: int | None = Field(
        default=None, ge=1, description="TTFT target the attainment is measured against."
    )
    itl_target_milliseconds: int | None = Field(
        default=None, ge=1, description="ITL target the attainment is measured against."
    )
    last_hour: EconomicsWindow | None = Field(default=None, description="The last 3600 seconds.")
    last_day: EconomicsWindow | None = Field(default=None, description="The last 86400 seconds.")
    message: str | None = Field(
        default=None,
        max_length=4096,
        description="Which figures are absent and why (no metrics, no price, no target, no requests).",
    )
