"""`spec.resources` and `spec.scheduling`: what one replica needs and where it may run.

Everything here ends up in the pod template, so it is held to what the API server accepts in a pod:
non-negative bounded quantities, label keys and values, Kubernetes' own Toleration rules, and
Kubernetes' own Affinity schema (vendored in pod_schemas.json). A value the pod would refuse is
refused at `kubectl apply`, not discovered when the Deployment is written.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from berth_operator.api.base import ApiModel, CrossFieldRule, cel_matches, section_default
from berth_operator.api.common import (
    DNS_SUBDOMAIN_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    QuantityAtMost,
    parse_quantity,
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
MAX_CPU = "1024"
MAX_MEMORY = "64Ti"

CpuQuantity = Annotated[str, QuantityAtMost(MAX_CPU)]
MemoryQuantity = Annotated[str, QuantityAtMost(MAX_MEMORY)]
Affinity = Annotated[
    dict[str, Any],
    WithJsonSchema(json.loads((Path(__file__).with_name("pod_schemas.json")).read_text())["affinity"]),
]


class GpuSpec(ApiModel):
    """GPUs of one replica."""

    count: int = Field(
        default=1,
        ge=0,
        le=16,
        description=(
            "GPUs per replica: the nvidia.com/gpu request and limit. Must equal "
            "runtime.tensorParallelSize (one GPU per rank). 0 runs the runtime on the CPU (small "
            "models, development; tensor-parallel ranks are then CPU processes): no GPU is requested "
            "and `product` must be unset."
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

    cross_field_rules = (
        CrossFieldRule(
            cel="self.count > 0 || !has(self.product)",
            message="resources.gpu.product needs resources.gpu.count of at least 1 (count 0 runs on the CPU)",
            holds=lambda gpu: gpu.count > 0 or gpu.product is None,
            field_path=".product",
        ),
    )


class ResourcesSpec(ApiModel):
    """Compute resources of one replica."""

    gpu: GpuSpec = Field(
        default_factory=GpuSpec,
        description="GPUs per replica.",
        json_schema_extra=section_default(GpuSpec),
    )
    cpu: CpuQuantity | None = Field(
        default=None,
        description=(
            f"CPU request of the runtime container (no CPU limit is set, to avoid throttling), e.g. 8, "
            f'"7500m" or "0.5" (a fraction as a string: a CRD field can hold an integer or a string, '
            f"not a decimal number); at most {MAX_CPU}."
        ),
    )
    memory: MemoryQuantity | None = Field(
        default=None,
        description=f"Memory request and limit of the runtime container, e.g. 64Gi; at most {MAX_MEMORY}.",
    )
    shared_memory_size: MemoryQuantity = Field(
        default="2Gi",
        description=(
            "Size limit of /dev/shm, a memory-backed emptyDir (counts against memory, so it may not "
            "exceed it). With runtime.tensorParallelSize > 1 at least 1Gi: NCCL and the ranks "
            "exchange data through it."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel=(
                "!has(self.memory) || quantity(string(self.sharedMemorySize))"
                ".compareTo(quantity(string(self.memory))) <= 0"
            ),
            message="resources.sharedMemorySize may not exceed resources.memory (/dev/shm counts against it)",
            holds=lambda resources: (
                resources.memory is None or _size(resources.shared_memory_size) <= _size(resources.memory)
            ),
            field_path=".sharedMemorySize",
        ),
    )


def _size(quantity: str) -> Decimal:
    return parse_quantity(quantity)


class Toleration(ApiModel):
    """A pod toleration (the Kubernetes core/v1 Toleration), with the API server's own rules."""

    key: str | None = Field(
        default=None,
        max_length=317,
        pattern=LABEL_KEY_PATTERN,
        description="Taint key (a label key); unset with Exists matches all taints.",
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Exists matches any value; Equal matches `value`."
    )
    value: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="Taint value matched by Equal (a label value); must be unset with Exists.",
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31536000,
        description=(
            "How long the pod stays bound after a NoExecute taint appears; only with effect NoExecute."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="has(self.key) || self.operator == 'Exists'",
            message="scheduling.tolerations: a toleration without a key must use operator Exists",
            holds=lambda toleration: toleration.key is not None or toleration.operator == "Exists",
            field_path=".operator",
        ),
        CrossFieldRule(
            cel="self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="scheduling.tolerations: value must be unset when operator is Exists",
            holds=lambda toleration: toleration.operator != "Exists" or not toleration.value,
            field_path=".value",
        ),
        CrossFieldRule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="scheduling.tolerations: tolerationSeconds is only valid with effect NoExecute",
            holds=lambda toleration: (
                toleration.toleration_seconds is None or toleration.effect == "NoExecute"
            ),
            field_path=".tolerationSeconds",
        ),
    )


class SchedulingSpec(ApiModel):
    """Where replicas may be scheduled, beyond the GPU product."""

    node_selector: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "Extra node labels replicas require (label keys to label values). The GPU product belongs "
            "in resources.gpu.product, not here."
        ),
        json_schema_extra={"maxProperties": 32},
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Extra tolerations; a toleration for the nvidia.com/gpu taint is always added.",
    )
    affinity: Affinity | None = Field(
        default=None,
        description=(
            "Pod affinity, anti-affinity and node affinity: a core/v1 Affinity (Kubernetes' own schema), "
            "copied into the pod template."
        ),
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "PriorityClass of the replicas. A class that does not exist shows as FailedCreate in status."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel=(
                "!has(self.nodeSelector) || "
                f"self.nodeSelector.all(key, {cel_matches('key', LABEL_KEY_PATTERN)})"
            ),
            message=(
                "scheduling.nodeSelector: each key must be a label key: an optional DNS-subdomain prefix "
                "and '/', then 1-63 letters, digits, '-', '_' or '.' starting and ending alphanumeric"
            ),
            holds=lambda scheduling: all(
                re.fullmatch(LABEL_KEY_PATTERN, key) for key in scheduling.node_selector
            ),
            field_path=".nodeSelector",
        ),
    )
