"""`status.coldStart`: how long a replica takes from creation to serving, and where that time goes.

A cold start is what an SLA autoscaler waits out after every scale-up, so it is measured, not
assumed: from the kubelet's own timestamps on the pods (no Prometheus, no access to the pods), the
median over the pods of the current revision that have served, kept while no new pod has started.
The runtime's `berth:cold_start_seconds` metric splits the start-up further (load, warm-up, graph
capture) for dashboards.
"""

from __future__ import annotations

from pydantic import Field

from berth_operator.api.base import StatusModel


class ColdStartStatus(StatusModel):
    """Seconds each stage of a replica's start took: medians over `pods` pods of `revision`."""

    revision: str = Field(max_length=63, description="The pod revision these pods run.")
    pods: int = Field(ge=1, description="Pods measured: those of the revision that have become Ready.")
    scheduling_seconds: float = Field(ge=0, description="Pod created to scheduled on a node.")
    download_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "The fetch-model init container's run: downloading the weights, or only verifying them "
            "when a shared cache already holds them. Absent for pvc:// and file:// sources."
        ),
    )
    startup_seconds: float = Field(
        ge=0,
        description=(
            "Runtime container started to Ready: loading the weights, warm-up and (on GPU) graph capture."
        ),
    )
    total_seconds: float = Field(
        ge=0, description="Pod created to Ready: what a scale-up waits out before the replica serves."
    )
    slowest_seconds: float = Field(ge=0, description="The longest creation-to-Ready of the pods measured.")
