"""Which price one GPU-hour of a deployment costs, or why there is none.

The spec's `spec.cost.gpuHourlyPrice` wins; otherwise the operator's price for the spec's GPU product
(BERTH_GPU_HOURLY_PRICES, keyed by the node label value nvidia.com/gpu.product). Without either, or
for CPU replicas (`resources.gpu.count` 0, which use no GPU), there is no price and the cost figures
are left out -- never a made-up number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from berth_operator.api import InferenceDeploymentSpec


@dataclass(frozen=True)
class Price:
    """The price of one GPU-hour, where it came from, and the currency label to show beside it."""

    per_gpu_hour: float
    source: Literal["Spec", "Operator"]
    currency: str | None = None


@dataclass(frozen=True)
class NoPrice:
    """Why no cost can be computed (in words a user can act on)."""

    reason: str


def resolve_price(
    spec: InferenceDeploymentSpec,
    operator_prices: Mapping[str, float],
    operator_currency: str | None = None,
) -> Price | NoPrice:
    gpu = spec.resources.gpu
    currency = spec.cost.currency or operator_currency
    if gpu.count == 0:
        return NoPrice("resources.gpu.count is 0 (CPU replicas): no GPU-hours to price, so no cost")
    if spec.cost.gpu_hourly_price is not None:
        return Price(spec.cost.gpu_hourly_price, "Spec", currency)
    if gpu.product is None:
        return NoPrice(
            "no GPU-hour price: resources.gpu.product is unset (any GPU), so no per-product price applies; "
            "set spec.cost.gpuHourlyPrice"
        )
    price = operator_prices.get(gpu.product)
    if price is None:
        priced = ", ".join(sorted(operator_prices)) or "none"
        return NoPrice(
            f"no GPU-hour price for {gpu.product}: the operator's BERTH_GPU_HOURLY_PRICES has none for it "
            f"(priced: {priced}); set it there or spec.cost.gpuHourlyPrice"
        )
    return Price(price, "Operator", currency)
