"""`spec.resources` and `spec.scheduling`: what one replica needs and where it may run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from berth_operator.api.base import ApiModel, section_default
from berth_operator.api.common import LABEL_VALUE_PATTERN, FreeFormObject, Quantity

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


class GpuSpec(ApiModel):
    """GPUs of one replica."""

    count: int = Field(
        default=1,
        ge=1,
        le=16,
        description=(
            "GPUs per replica: the nvidia.com/gpu request and limit. Must be a multiple of "
            "runtime.tensorParallelSize."
        ),
    )
    product: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description=(
            "GPU product as NVIDIA's GPU feature discovery labels nodes (nvidia.com/gpu.product), "
            "e.g. NVIDIA-H100-80GB-HBM3. Becomes a node selector. Unset: any GPU node."
        ),
    )


class ResourcesSpec(ApiModel):
    """Compute resources of one replica."""

    gpu: GpuSpec = Field(
        default_factory=GpuSpec,
        description="GPUs per replica.",
        json_schema_extra=section_default(GpuSpec),
    )
    cpu: Quantity | None = Field(
        default=None,
        description="CPU request of the runtime container (no CPU limit is set, to avoid throttling).",
    )
    memory: Quantity | None = Field(
        default=None,
        description="Memory request and limit of the runtime container.",
    )
    shared_memory_size: Quantity = Field(
        default="2Gi",
        description="Size limit of /dev/shm, a memory-backed emptyDir (counts against memory).",
    )


class Toleration(ApiModel):
    """A pod toleration (the Kubernetes core/v1 Toleration)."""

    key: str | None = Field(
        default=None, max_length=317, description="Taint key; empty with Exists matches all taints."
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Exists matches any value; Equal matches `value`."
    )
    value: str | None = Field(default=None, max_length=63, description="Taint value matched by Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )


class SchedulingSpec(ApiModel):
    """Where replicas may be scheduled, beyond the GPU product."""

    node_selector: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "Extra node labels replicas require. The GPU product belongs in resources.gpu.product, not here."
        ),
        json_schema_extra={"maxProperties": 32},
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Extra tolerations; a toleration for the nvidia.com/gpu taint is always added.",
    )
    affinity: FreeFormObject | None = Field(
        default=None,
        description="Pod affinity, anti-affinity and node affinity (core/v1 Affinity), passed through.",
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass of the replicas."
    )
