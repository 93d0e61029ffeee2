"""berth's API: pydantic models of InferenceDeployment (berth.dev/v1alpha1), the one source of truth.

The CRD in crds/ and the reference in docs/api.md are generated from these models; the operator
parses every object through them. No Kubernetes client and no kopf here (import-linter enforces it).
"""

from berth_operator.api.autoscaling import AutoscalingSpec, SloSpec
from berth_operator.api.base import ApiModel, CrossFieldRule, StatusModel
from berth_operator.api.common import LocalObjectReference, SecretKeySelector
from berth_operator.api.cost import CostSpec
from berth_operator.api.economics_status import EconomicsStatus, EconomicsWindow
from berth_operator.api.model import ModelSpec
from berth_operator.api.prometheus import PrometheusSpec
from berth_operator.api.resources import GpuSpec, ResourcesSpec, SchedulingSpec, Toleration
from berth_operator.api.rollout import AnalysisSpec, RolloutSpec, RolloutStep
from berth_operator.api.runtime import EnvVar, KVCacheSpec, RuntimeSpec, SpeculativeSpec
from berth_operator.api.serving import ServingSpec
from berth_operator.api.spec import InferenceDeploymentSpec
from berth_operator.api.status import (
    AutoscalingSignals,
    AutoscalingStatus,
    Condition,
    InferenceDeploymentStatus,
    LearnedCapacity,
    RevisionStatus,
    RolloutStatus,
    ScalingDecision,
    ScalingRecommendation,
)

__all__ = [
    "AnalysisSpec",
    "ApiModel",
    "AutoscalingSignals",
    "AutoscalingSpec",
    "AutoscalingStatus",
    "Condition",
    "CostSpec",
    "CrossFieldRule",
    "EconomicsStatus",
    "EconomicsWindow",
    "EnvVar",
    "GpuSpec",
    "InferenceDeploymentSpec",
    "InferenceDeploymentStatus",
    "KVCacheSpec",
    "LearnedCapacity",
    "LocalObjectReference",
    "ModelSpec",
    "PrometheusSpec",
    "ResourcesSpec",
    "RevisionStatus",
    "RolloutSpec",
    "RolloutStatus",
    "RolloutStep",
    "RuntimeSpec",
    "ScalingDecision",
    "ScalingRecommendation",
    "SchedulingSpec",
    "SecretKeySelector",
    "ServingSpec",
    "SloSpec",
    "SpeculativeSpec",
    "StatusModel",
    "Toleration",
]
