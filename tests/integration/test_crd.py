"""The InferenceDeployment CRD on a real API server: it installs, explains and validates.

Why: the CRD is generated from pydantic models and its CEL rules are only ever evaluated by an API
server. Unit tests compare YAML; these prove the server accepts the schema, serves its
descriptions to ``kubectl explain`` and rejects each kind of bad input with a message that names
the field. Server-side dry runs keep the cluster clean.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from tests.integration.support import CRD_DIR, REPO_ROOT, ClusterAccess, KubectlError, wait_for

pytestmark = pytest.mark.integration

BASE_SPEC: dict[str, Any] = {"model": {"name": "chat", "source": "hf://Qwen/Qwen2.5-7B-Instruct"}}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resource(spec_patch: dict[str, Any], name: str = "probe") -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": _merge(BASE_SPEC, spec_patch),
    }


def _dry_run(cluster: ClusterAccess, resource: dict[str, Any]) -> dict[str, Any]:
    output = cluster.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(resource))
    return dict(json.loads(output))


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / "inferencedeployments.berth.dev.yaml").read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_explain_shows_the_autoscaling_descriptions(crds: ClusterAccess) -> None:
    # The API server publishes a new CRD's OpenAPI a moment after Established; explain reads that.
    explained = wait_for(
        lambda: crds.kubectl("explain", "inferencedeployment.spec.autoscaling"), 30, "the CRD's OpenAPI"
    )
    flat = " ".join(explained.split())
    autoscaling = _crd_schema()["properties"]["spec"]["properties"]["autoscaling"]
    assert " ".join(autoscaling["description"].split()) in flat
    for field_name, field_schema in autoscaling["properties"].items():
        assert re.search(rf"^\s*{field_name}\s", explained, re.MULTILINE), field_name
        first_words = " ".join(field_schema["description"].split()[:4])
        assert first_words in flat, (field_name, first_words)


def test_the_sample_is_accepted_and_defaults_are_filled_in(crds: ClusterAccess) -> None:
    sample = yaml.safe_load((REPO_ROOT / "examples" / "chat.yaml").read_text())
    sample["metadata"]["namespace"] = "default"
    accepted = _dry_run(crds, sample)
    assert accepted["spec"]["model"]["name"] == sample["spec"]["model"]["name"]
    minimal = _dry_run(crds, _resource({}))
    assert minimal["spec"]["replicas"] == 1
    assert minimal["spec"]["resources"]["gpu"]["count"] == 1
    assert minimal["spec"]["rollout"]["strategy"] == "Rolling"


# (case, spec patch or whole-resource override, field the message must name, words it must contain)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("type", {"replicas": "three"}, "spec.replicas", "must be of type integer"),
    ("enum", {"model": {"dtype": "int4"}}, "spec.model.dtype", "Unsupported value"),
    ("maximum", {"replicas": 1001}, "spec.replicas", "less than or equal to 1000"),
    (
        "minimum",
        {"resources": {"gpu": {"count": -1}}},
        "spec.resources.gpu.count",
        "greater than or equal to 0",
    ),
    ("pattern", {"model": {"source": "ftp://models/x"}}, "spec.model.source", "should match"),
    (
        "fraction-bound",
        {"runtime": {"kvCache": {"gpuMemoryUtilization": 1.5}}},
        "spec.runtime.kvCache",
        "less than or equal to 1",
    ),
    ("unknown-field", {"replica": 2}, "spec.replica", "unknown field"),
    (
        "cel-model-cache-pvc-needs-a-claim",
        {"model": {"cache": {"mode": "PVC"}}},
        "spec.model.cache.claimName",
        "required with mode PVC",
    ),
    (
        "cel-model-cache-budget-only-for-pvc",
        {"model": {"cache": {"mode": "Node", "budget": "1Ti"}}},
        "spec.model.cache.budget",
        "only valid with mode PVC",
    ),
    (
        "cel-model-cache-only-for-downloads",
        {"model": {"source": "pvc://weights/llama", "cache": {"mode": "Node"}}},
        "spec.model.cache.mode",
        "only valid with an hf:// or s3:// source",
    ),
    (
        "cel-model-cache-size-limit-only-for-pod",
        {"model": {"cacheSizeLimit": "10Gi", "cache": {"mode": "Node"}}},
        "spec.model.cacheSizeLimit",
        "only valid with cache mode Pod",
    ),
    (
        "cel-revision-needs-hf",
        {"model": {"source": "s3://bucket/m", "revision": "abc"}},
        "spec.model.revision",
        "hf://",
    ),
    (
        "cel-credentials-need-hf-or-s3",
        {"model": {"source": "file:///models/m", "credentialsSecretRef": {"name": "hf"}}},
        "spec.model.credentialsSecretRef",
        "credentialsSecretRef",
    ),
    (
        "cel-kv-cache-blocks-or-utilization",
        {"runtime": {"kvCache": {"blocks": 100, "gpuMemoryUtilization": 0.5}}},
        "spec.runtime.kvCache",
        "blocks or gpuMemoryUtilization",
    ),
    (
        "cel-speculative-needs-num-tokens",
        {"runtime": {"speculative": {"method": "ngram"}}},
        "spec.runtime.speculative.numTokens",
        "numTokens",
    ),
    (
        "extra-args-managed-flag",
        {"runtime": {"extraArgs": ["--port=9000"]}},
        "spec.runtime.extraArgs",
        "--port",
    ),
    ("cel-cpu-bound", {"resources": {"cpu": -4}}, "spec.resources.cpu", "from 0 to 1024"),
    ("cel-memory-bound", {"resources": {"memory": "100Ti"}}, "spec.resources.memory", "from 0 to 64Ti"),
    (
        "cel-shm-within-memory",
        {"resources": {"memory": "4Gi", "sharedMemorySize": "8Gi"}},
        "spec.resources.sharedMemorySize",
        "may not exceed resources.memory",
    ),
    ("cel-cache-bound", {"model": {"cacheSizeLimit": "2Pi"}}, "spec.model.cacheSizeLimit", "from 0 to 1Pi"),
    (
        "cel-cpu-replica-no-product",
        {"resources": {"gpu": {"count": 0, "product": "NVIDIA-H100-80GB-HBM3"}}},
        "spec.resources.gpu.product",
        "count 0 runs on the CPU",
    ),
    ("cel-s3-bucket-rules", {"model": {"source": "s3://my..models/x"}}, "spec.model.source", "S3's rules"),
    ("cel-no-parent-segments", {"model": {"source": "pvc://c/../x"}}, "spec.model.source", "'..' segments"),
    (
        "cel-reserved-env",
        {"runtime": {"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}},
        "spec.runtime.env",
        "may not set",
    ),
    (
        "cel-node-selector-keys",
        {"scheduling": {"nodeSelector": {"not a key": "x"}}},
        "spec.scheduling.nodeSelector",
        "label key",
    ),
    (
        "cel-min-above-max",
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
        "maxReplicas",
    ),
    (
        "cel-enabled-needs-slo",
        {"autoscaling": {"enabled": True}},
        "spec.autoscaling.slo",
        "timeToFirstTokenP95",
    ),
    (
        "cel-pod-sampling-room",
        {"autoscaling": {"intervalSeconds": 5, "podSampling": {"intervalSeconds": 3}}},
        "spec.autoscaling.podSampling.intervalSeconds",
        "no room for a read",
    ),
    (
        "cel-surge-plus-unavailable",
        {"rollout": {"maxSurge": 0, "maxUnavailable": 0}},
        "spec.rollout.maxSurge",
        "at least 1",
    ),
    ("cel-canary-needs-steps", {"rollout": {"strategy": "Canary"}}, "spec.rollout.steps", "Canary"),
    (
        "cel-ports-differ",
        {"serving": {"port": 9000, "metricsPort": 9000}},
        "spec.serving.metricsPort",
        "differ",
    ),
    (
        "cel-one-gpu-per-tp-rank",
        {"resources": {"gpu": {"count": 4}}, "runtime": {"tensorParallelSize": 2}},
        "spec.resources.gpu.count",
        "one GPU per rank",
    ),
    (
        "cel-tp-shared-memory",
        {
            "resources": {"gpu": {"count": 2}, "sharedMemorySize": "256Mi"},
            "runtime": {"tensorParallelSize": 2},
        },
        "spec.resources.sharedMemorySize",
        "at least 1Gi",
    ),
    (
        "cel-max-gpus-budget",
        {"autoscaling": {"minReplicas": 2, "maxGpus": 1}},
        "spec.autoscaling.maxGpus",
        "minReplicas",
    ),
    (
        "cel-node-selector-product",
        {"scheduling": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}}},
        "spec.scheduling.nodeSelector",
        "resources.gpu.product",
    ),
    (
        "cel-prometheus-one-credential",
        {"autoscaling": {"prometheus": {"bearerTokenFile": "/t", "bearerTokenSecretRef": {"name": "t"}}}},
        "spec.autoscaling.prometheus",
        "at most one of bearerTokenSecretRef",
    ),
    (
        "cel-prometheus-token-file-default-only",
        {"autoscaling": {"prometheus": {"url": "https://p.example", "bearerTokenFile": "/t"}}},
        "spec.autoscaling.prometheus.bearerTokenFile",
        "operator's default Prometheus",
    ),
    (
        "cel-prometheus-tls-needs-https",
        {"autoscaling": {"prometheus": {"url": "http://p:9090", "tls": {"insecureSkipVerify": True}}}},
        "spec.autoscaling.prometheus.tls",
        "needs an https:// url",
    ),
    (
        "cel-prometheus-header-names",
        {"autoscaling": {"prometheus": {"headers": {"X Scope": "a"}}}},
        "spec.autoscaling.prometheus.headers",
        "each name must be",
    ),
    (
        "cel-prometheus-no-authorization-header",
        {
            "autoscaling": {
                "prometheus": {"bearerTokenSecretRef": {"name": "t"}, "headers": {"AUTHORIZATION": "x"}}
            }
        },
        "spec.autoscaling.prometheus.headers",
        "may not set Authorization",
    ),
    (
        "cel-prometheus-basic-auth-username",
        {"autoscaling": {"prometheus": {"basicAuth": {"passwordSecretRef": {"name": "p"}}}}},
        "spec.autoscaling.prometheus.basicAuth",
        "exactly one of username and usernameSecretRef",
    ),
    (
        "cel-prometheus-tls-one-ca",
        {"autoscaling": {"prometheus": {"tls": {"caFile": "/ca.crt", "caSecretRef": {"name": "ca"}}}}},
        "spec.autoscaling.prometheus.tls",
        "not both",
    ),
    (
        "cel-prometheus-tls-insecure-without-ca",
        {"autoscaling": {"prometheus": {"tls": {"caFile": "/ca.crt", "insecureSkipVerify": True}}}},
        "spec.autoscaling.prometheus.tls.insecureSkipVerify",
        "checks no certificate",
    ),
]


@pytest.mark.parametrize(
    ("patch", "field", "words"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_resources_are_rejected_naming_the_field(
    crds: ClusterAccess, patch: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(KubectlError) as rejected:
        _dry_run(crds, _resource(patch))
    message = rejected.value.stderr
    assert "is invalid" in message or "unknown field" in message, message
    assert field in message, message
    assert words in message, message


def test_a_name_that_cannot_name_a_service_is_rejected(crds: ClusterAccess) -> None:
    with pytest.raises(KubectlError) as rejected:
        _dry_run(crds, _resource({}, name="7b.chat"))
    assert "metadata.name must be an RFC 1035 label" in rejected.value.stderr


def test_every_cel_rule_in_the_crd_has_a_rejection_case() -> None:
    """Guards the table above: a new CEL rule in the CRD needs a case here."""

    def rules(schema: dict[str, Any], path: str) -> list[str]:
        found = [
            path + rule.get("fieldPath", "")
            for rule in schema.get("x-kubernetes-validations", [])
            if "rule" in rule
        ]
        for name, child in (schema.get("properties") or {}).items():
            found += rules(child, f"{path}.{name}")
        return found

    declared = set(rules(_crd_schema()["properties"]["spec"], "spec"))
    covered = {field for name, _, field, _ in INVALID if name.startswith("cel-")}
    assert declared <= covered, f"CEL rules without a rejection case: {sorted(declared - covered)}"


@pytest.mark.parametrize(
    "resources",
    [{"gpu": {"count": 2}}, {"gpu": {"count": 0}, "sharedMemorySize": "1Gi"}],
    ids=["one-gpu-per-rank", "cpu-ranks"],
)
def test_tensor_parallel_ranks_on_gpus_or_on_the_cpu_are_accepted(
    crds: ClusterAccess, resources: dict[str, Any]
) -> None:
    _dry_run(crds, _resource({"resources": resources, "runtime": {"tensorParallelSize": 2}}))
