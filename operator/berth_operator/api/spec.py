"""`InferenceDeploymentSpec`: the whole desired state, and the rules that span its sections."""

from __future__ import annotations

from pydantic import Field

from berth_operator.api.autoscaling import AutoscalingSpec, replica_bounds
from berth_operator.api.base import ApiModel, CrossFieldRule, section_default
from berth_operator.api.common import parse_quantity
from berth_operator.api.cost import CostSpec
from berth_operator.api.model import ModelSpec
from berth_operator.api.resources import GPU_PRODUCT_LABEL, ResourcesSpec, SchedulingSpec
from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.runtime import RuntimeSpec
from berth_operator.api.serving import ServingSpec


def _gpus_fit_tensor_parallelism(spec: InferenceDeploymentSpec) -> bool:
    """One GPU per tensor-parallel rank: more would sit idle in every replica, fewer cannot hold the
    ranks. With no GPU the ranks are CPU processes (gloo)."""
    count = spec.resources.gpu.count
    return count == 0 or count == spec.runtime.tensor_parallel_size


# NCCL's intra-node transport and the ranks' shared tensors live in /dev/shm; below this the
# collectives fail at start-up ("Error while creating shared memory segment").
TENSOR_PARALLEL_MIN_SHARED_MEMORY = "1Gi"


def _shared_memory_fits_tensor_parallelism(spec: InferenceDeploymentSpec) -> bool:
    return spec.runtime.tensor_parallel_size <= 1 or parse_quantity(
        spec.resources.shared_memory_size
    ) >= parse_quantity(TENSOR_PARALLEL_MIN_SHARED_MEMORY)


def _gpu_budget_fits_min_replicas(spec: InferenceDeploymentSpec) -> bool:
    budget = spec.autoscaling.max_gpus
    return budget is None or budget >= spec.autoscaling.min_replicas * spec.resources.gpu.count


class InferenceDeploymentSpec(ApiModel):
    """Desired state of a dedicated LLM inference deployment on GPUs."""

    model: ModelSpec = Field(description="The model to serve and where its weights come from.")
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec,
        description="The inference runtime: image and engine settings.",
        json_schema_extra=section_default(RuntimeSpec),
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="GPUs, CPU and memory of one replica.",
        json_schema_extra=section_default(ResourcesSpec),
    )
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec,
        description="Node selection, tolerations, affinity and priority.",
        json_schema_extra=section_default(SchedulingSpec),
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description=(
            "Replica count (the scale subresource's spec.replicas). With autoscaling enabled it is "
            "only the initial count; the autoscaler's decision (status.desiredReplicas) takes over."
        ),
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="SLO-driven autoscaling.",
        json_schema_extra=section_default(AutoscalingSpec),
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How a new revision replaces the old one.",
        json_schema_extra=section_default(RolloutSpec),
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec,
        description="Endpoint, authentication and graceful shutdown.",
        json_schema_extra=section_default(ServingSpec),
    )
    cost: CostSpec = Field(
        default_factory=CostSpec,
        description=(
            "Price of GPU time for the cost figures in status.economics (reporting only: a change here "
            "restarts no pod)."
        ),
        json_schema_extra=section_default(CostSpec),
    )

    def replica_bounds(self) -> tuple[int, int]:
        """(fewest, most) replicas autoscaling may run: the autoscaling bounds, the most capped by
        the GPU budget (see `api.autoscaling.replica_bounds`)."""
        autoscaling = self.autoscaling
        return replica_bounds(
            autoscaling.min_replicas, autoscaling.max_replicas, self.resources.gpu.count, autoscaling.max_gpus
        )

    cross_field_rules = (
        CrossFieldRule(
            cel="self.resources.gpu.count in [0, self.runtime.tensorParallelSize]",
            message=(
                "resources.gpu.count must equal runtime.tensorParallelSize (one GPU per rank), or be 0 "
                "to run the ranks on the CPU"
            ),
            holds=_gpus_fit_tensor_parallelism,
            field_path=".resources.gpu.count",
        ),
        CrossFieldRule(
            cel=(
                "self.runtime.tensorParallelSize <= 1 || "
                "quantity(string(self.resources.sharedMemorySize))"
                f".compareTo(quantity('{TENSOR_PARALLEL_MIN_SHARED_MEMORY}')) >= 0"
            ),
            message=(
                f"resources.sharedMemorySize must be at least {TENSOR_PARALLEL_MIN_SHARED_MEMORY} when "
                "runtime.tensorParallelSize > 1 (NCCL and the ranks exchange data through /dev/shm)"
            ),
            holds=_shared_memory_fits_tensor_parallelism,
            field_path=".resources.sharedMemorySize",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.autoscaling.maxGpus) || "
                "self.autoscaling.maxGpus >= self.autoscaling.minReplicas * self.resources.gpu.count"
            ),
            message="autoscaling.maxGpus must be at least autoscaling.minReplicas x resources.gpu.count",
            holds=_gpu_budget_fits_min_replicas,
            field_path=".autoscaling.maxGpus",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.scheduling.nodeSelector) || "
                f"!('{GPU_PRODUCT_LABEL}' in self.scheduling.nodeSelector)"
            ),
            message=f"scheduling.nodeSelector may not set {GPU_PRODUCT_LABEL}; use resources.gpu.product",
            holds=lambda spec: GPU_PRODUCT_LABEL not in spec.scheduling.node_selector,
            field_path=".scheduling.nodeSelector",
        ),
    )
