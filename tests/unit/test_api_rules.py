"""The API models accept good specs, fill defaults, and reject bad ones with messages that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus

BASE: dict[str, Any] = {
    "model": {"name": "llama-3.1-8b-instruct", "source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}, "cpu": 8, "memory": "64Gi"},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    node = spec
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return spec


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = InferenceDeploymentSpec.model_validate(BASE)
    assert spec.replicas == 1
    assert spec.model.dtype == "bfloat16"
    assert spec.runtime.kv_cache.block_size == 16
    assert spec.runtime.kv_cache.gpu_memory_utilization is None
    assert spec.serving.port == 8000
    assert spec.rollout.max_unavailable == 0
    assert spec.resources.cpu == "8"  # YAML integers are accepted as quantities


def test_wire_form_round_trips() -> None:
    spec = InferenceDeploymentSpec.model_validate(BASE)
    assert InferenceDeploymentSpec.model_validate(spec.to_wire()) == spec


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("model.source", "http://example.com/model", "model.source"),
        ("model.source", "hf://org/name@main", "model.source"),
        ("model.dtype", "int4", "model.dtype"),
        ("model.quantization", "awq", "model.quantization"),
        ("model", {"name": "m", "source": "s3://bucket/m", "revision": "abc"}, "only valid with an hf://"),
        ("replicas", -1, "replicas"),
        ("resources.memory", "lots", "resources.memory"),
        ("resources.gpu.count", -1, "resources.gpu.count"),
        ("resources.gpu", {"count": 0, "product": "NVIDIA-H100-80GB-HBM3"}, "gpu.product needs"),
        ("runtime.tensorParallelSize", 2, "tensorParallelSize"),
        (
            "runtime.kvCache",
            {"blocks": 100, "gpuMemoryUtilization": 0.8},
            "either blocks or gpuMemoryUtilization",
        ),
        ("runtime.kvCache", {"gpuMemoryUtilization": 1.5}, "gpuMemoryUtilization"),
        ("runtime.speculative", {"method": "ngram"}, "numTokens must be set"),
        ("runtime.speculative", {"method": "none", "numTokens": 3}, "numTokens must be set"),
        ("runtime.extraArgs", ["--port=9000"], "runtime.extraArgs.0"),
        ("runtime.extraArgs", ["--model"], "runtime.extraArgs.0"),
        ("runtime.extraArgs", ["--seed=7", "--por=9000"], "runtime.extraArgs.1"),  # an abbreviation
        ("runtime.extraArgs", ["--seed", "7"], "runtime.extraArgs.0"),  # one item, one --flag=value
        ("runtime.extraArgs", ["--seed=7 --port=9000"], "runtime.extraArgs.0"),
        ("runtime.extraArgs", ["; rm -rf /"], "runtime.extraArgs.0"),
        ("runtime.extraArgs", ["--log-level=verbose"], "runtime.extraArgs.0"),
        ("runtime.env", [{"name": "HOME", "value": "/"}], "runtime.env may not set"),
        ("runtime.env", [{"name": "HF_HUB_OFFLINE", "value": "0"}], "runtime.env may not set"),
        ("runtime.env", [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}], "runtime.env may not set"),
        ("runtime.env", [{"name": "CUDA_VISIBLE_DEVICES", "value": "0,1"}], "runtime.env may not set"),
        ("runtime.image", "registry.example/berth runtime:1", "runtime.image"),
        ("runtime.serviceAccountName", "Not_A_Name", "runtime.serviceAccountName"),
        ("scheduling.priorityClassName", "high priority", "scheduling.priorityClassName"),
        ("resources.cpu", "-1", "resources.cpu"),
        ("resources.cpu", -2, "resources.cpu"),
        ("resources.memory", "-64Gi", "resources.memory"),
        ("resources.memory", "1e1000", "resources.memory"),
        ("resources.memory", "65Ti", "from 0 to 64Ti"),
        ("resources.cpu", "2000", "from 0 to 1024"),
        ("resources", {"memory": "8Gi", "sharedMemorySize": "16Gi"}, "may not exceed resources.memory"),
        ("model.cacheSizeLimit", "-1Gi", "model.cacheSizeLimit"),
        ("model.source", "s3://ab/model", "model.source"),
        ("model.source", "s3://10.0.0.1/model", "S3's rules"),
        ("model.source", "s3://my..bucket/model", "S3's rules"),
        ("model.source", "s3://xn--bucket/model", "S3's rules"),
        ("model.source", "s3://bucket-s3alias/model", "S3's rules"),
        ("model.source", "pvc://claim/../../../etc", "'..' segments"),
        ("model.source", "pvc://claim/a/%2e%2E/b", "'..' segments"),
        ("model.source", "file:///models/../etc", "'..' segments"),
        ("scheduling.nodeSelector", {"bad key!": "x"}, "each key must be a label key"),
        ("scheduling.nodeSelector", {"zone": "not a value"}, "scheduling.nodeSelector.zone"),
        ("scheduling.tolerations", [{"key": "a", "operator": "Exists", "value": "x"}], "unset when operator"),
        ("scheduling.tolerations", [{"key": "a", "tolerationSeconds": 5}], "only valid with effect"),
        ("scheduling.tolerations", [{"operator": "Equal", "value": "x"}], "without a key must use"),
        ("scheduling.tolerations", [{"key": "has space"}], "scheduling.tolerations.0.key"),
        ("runtime.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}], "env"),
        ("runtime.unknownField", 1, "unknownField"),
        ("autoscaling", {"minReplicas": 5, "maxReplicas": 2}, "minReplicas must be less than"),
        ("autoscaling", {"enabled": True}, "autoscaling.slo needs"),
        ("autoscaling", {"podSampling": {"intervalSeconds": 7}}, "leaves no room for a read"),
        ("autoscaling", {"intervalSeconds": 5, "podSampling": {"intervalSeconds": 3}}, "leaves no room"),
        ("serving", {"port": 8000, "metricsPort": 8000}, "must differ"),
        ("rollout", {"strategy": "Canary"}, "rollout.steps is required"),
        ("rollout", {"steps": [{"replicas": 1}]}, "rollout.steps is required"),
        ("rollout", {"maxSurge": 0, "maxUnavailable": 0}, "maxSurge plus maxUnavailable"),
        ("scheduling.nodeSelector", {"nvidia.com/gpu.product": "X"}, "use resources.gpu.product"),
    ],
)
def test_bad_field_is_rejected_with_its_name(path: str, value: Any, expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        InferenceDeploymentSpec.model_validate(_with(path, value))
    assert expected in str(error.value)


def test_one_gpu_per_tensor_parallel_rank() -> None:
    spec = _with("runtime.tensorParallelSize", 2)
    with pytest.raises(ValidationError, match=r"must equal runtime\.tensorParallelSize"):
        InferenceDeploymentSpec.model_validate(spec)
    spec["resources"]["gpu"]["count"] = 2
    assert InferenceDeploymentSpec.model_validate(spec).runtime.tensor_parallel_size == 2
    for idle in (3, 4):  # GPUs no rank would use
        spec["resources"]["gpu"]["count"] = idle
        with pytest.raises(ValidationError, match="one GPU per rank"):
            InferenceDeploymentSpec.model_validate(spec)


def test_tensor_parallel_ranks_need_shared_memory() -> None:
    spec = _with("runtime.tensorParallelSize", 2)
    spec["resources"].update({"gpu": {"count": 2}, "sharedMemorySize": "512Mi"})
    with pytest.raises(ValidationError, match=r"sharedMemorySize must be at least 1Gi"):
        InferenceDeploymentSpec.model_validate(spec)
    spec["resources"]["sharedMemorySize"] = "1Gi"
    assert InferenceDeploymentSpec.model_validate(spec).resources.shared_memory_size == "1Gi"
    one_rank = _with("resources.sharedMemorySize", "64Mi")
    assert InferenceDeploymentSpec.model_validate(one_rank).resources.shared_memory_size == "64Mi"


def test_gpu_budget_must_cover_min_replicas() -> None:
    spec = _with(
        "autoscaling",
        {"enabled": True, "minReplicas": 2, "maxGpus": 3, "slo": {"timeToFirstTokenP95Milliseconds": 500}},
    )
    spec["resources"]["gpu"]["count"] = 2
    spec["runtime"] = {"tensorParallelSize": 2}
    with pytest.raises(ValidationError, match=r"maxGpus must be at least"):
        InferenceDeploymentSpec.model_validate(spec)
    spec["autoscaling"]["maxGpus"] = 4
    assert InferenceDeploymentSpec.model_validate(spec).autoscaling.max_gpus == 4


@pytest.mark.parametrize(
    "source",
    [
        "hf://gpt2",
        "hf://org/name",
        "s3://bucket/prefix/model",
        "pvc://models/llama/8b",
        "file:///models/tiny",
        "s3://a-b/model",
        "s3://my.bucket.name/model",
        "pvc://models/llama..v2/weights",
    ],
)
def test_every_source_scheme_is_accepted(source: str) -> None:
    spec = InferenceDeploymentSpec.model_validate(_with("model.source", source))
    assert spec.model.scheme == source.split("://")[0]
    assert spec.model.is_downloaded == source.startswith(("hf://", "s3://"))


def test_status_parses_other_writers_fields_and_decision_aliases() -> None:
    status = InferenceDeploymentStatus.model_validate(
        {
            "phase": "Ready",
            "futureField": {"x": 1},
            "autoscaling": {
                "lastDecision": {"time": "2026-01-01T00:00:00Z", "from": 1, "to": 2, "reason": "TTFT high"}
            },
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AllReplicasReady",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    )
    assert status.autoscaling is not None and status.autoscaling.last_decision is not None
    assert status.autoscaling.last_decision.to_replicas == 2
    assert status.to_wire()["autoscaling"]["lastDecision"]["from"] == 1
    ready = status.condition("Ready")
    assert ready is not None and ready.reason == "AllReplicasReady"
    assert status.condition("Degraded") is None


@pytest.mark.parametrize(
    ("scheduling", "resources"),
    [
        ({"tolerations": [{"operator": "Exists"}]}, {"cpu": "500m", "memory": "64Gi"}),
        ({"tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": 30}]}, {"cpu": 0.5}),
        ({"nodeSelector": {"topology.kubernetes.io/zone": "eu-west-1a"}}, {"memory": 68719476736}),
        ({"priorityClassName": "inference-high"}, {"memory": "8Gi", "sharedMemorySize": "8Gi"}),
    ],
)
def test_what_a_pod_accepts_is_accepted(scheduling: dict[str, Any], resources: dict[str, Any]) -> None:
    spec = copy.deepcopy(BASE)
    spec["scheduling"] = scheduling
    spec["resources"] = resources
    wire = InferenceDeploymentSpec.model_validate(spec).to_wire()
    assert wire["scheduling"]["nodeSelector"] == scheduling.get("nodeSelector", {})
    assert [toleration.get("key") for toleration in wire["scheduling"]["tolerations"]] == [
        toleration.get("key") for toleration in scheduling.get("tolerations", [])
    ]
    assert {key: str(value) for key, value in resources.items()}.items() <= wire["resources"].items()


def test_extra_args_accept_the_runtimes_own_flags_in_full() -> None:
    spec = _with("runtime.extraArgs", ["--seed=-3", "--log-level=trace"])
    parsed = InferenceDeploymentSpec.model_validate(spec)
    assert parsed.runtime.extra_args == ["--seed=-3", "--log-level=trace"]


def test_zero_gpus_runs_on_the_cpu_with_cpu_ranks() -> None:
    spec = copy.deepcopy(BASE)
    spec["resources"]["gpu"] = {"count": 0}
    assert InferenceDeploymentSpec.model_validate(spec).resources.gpu.count == 0
    spec["runtime"] = {"tensorParallelSize": 2}
    assert InferenceDeploymentSpec.model_validate(spec).runtime.tensor_parallel_size == 2
