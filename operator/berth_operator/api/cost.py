"""`spec.cost`: what one GPU-hour of this deployment costs, for the economics in `status.economics`.

A top-level section of its own, outside everything that shapes a replica (`builders.labels.revision_hash`
hashes model, runtime, resources, scheduling and serving only), so a price change never restarts a pod.
Unset, the operator's per-product price (BERTH_GPU_HOURLY_PRICES) applies; see docs/economics.md.
"""

from __future__ import annotations

from pydantic import Field

from berth_operator.api.base import ApiModel

MAX_GPU_HOURLY_PRICE = 1_000_000


class CostSpec(ApiModel):
    """The price of GPU time, used only to report cost (it changes nothing that runs)."""

    gpu_hourly_price: float | None = Field(
        default=None,
        ge=0,
        le=MAX_GPU_HOURLY_PRICE,
        description=(
            "Price of one GPU for one hour, in whatever currency you count in (no currency is assumed; "
            "see currency). Overrides the operator's price for resources.gpu.product "
            "(BERTH_GPU_HOURLY_PRICES). Unset: the operator's price, if it has one for the product."
        ),
    )
    currency: str | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
        description=(
            "Label shown beside the cost figures (e.g. USD, EUR, credits); display only, nothing is "
            "converted. Unset: the operator's BERTH_GPU_PRICE_CURRENCY, if set."
        ),
    )
