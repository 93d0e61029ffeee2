"""Hostile InferenceDeployments, one per line, by class of defect: what admission must refuse (and the
field its message must name), and what only the operator can find out (and the reason its status must
give). The integration tests in test_hostile_specs.py apply every one to a real control plane.

Why a table: each class of defect (signed quantities, free-form pod fields, managed runtime flags,
reserved environment, unsafe sources, ...) gets several members, so a fix of the class is tested,
not a fix of one example.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

MODEL = {"name": "m", "source": "hf://org/model"}


@dataclass(frozen=True)
class Refused:
    """A spec the API server must refuse at `kubectl apply`, naming `field` in its message."""

    case: str
    spec: dict[str, Any]
    field: str


@dataclass(frozen=True)
class Reported:
    """A spec that passes admission but can never run as written: the operator must say so in status
    (condition `condition` False/True with `reason`, message containing `fragment`)."""

    case: str
    spec: dict[str, Any]
    condition: str
    reason: str
    fragment: str


def _spec(**sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": copy.deepcopy(MODEL)}
    spec.update(copy.deepcopy(sections))
    return spec


def _resources(**values: Any) -> dict[str, Any]:
    return _spec(resources=values)


def _scheduling(**values: Any) -> dict[str, Any]:
    return _spec(scheduling=values)


def _runtime(**values: Any) -> dict[str, Any]:
    return _spec(runtime=values)


def _source(source: str) -> dict[str, Any]:
    return {"model": {"name": "m", "source": source}}


def _node_term(**requirement: Any) -> dict[str, Any]:
    terms = {"nodeSelectorTerms": [{"matchExpressions": [requirement]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}


REFUSED: list[Refused] = [
    # Quantities: never negative, never absurd, /dev/shm within memory.
    Refused("cpu-negative-millis", _resources(cpu="-250m"), "spec.resources.cpu"),
    Refused("cpu-negative-integer", _resources(cpu=-2), "spec.resources.cpu"),
    Refused("cpu-words", _resources(cpu="eight"), "spec.resources.cpu"),
    Refused("cpu-too-many", _resources(cpu="5000"), "spec.resources.cpu"),
    Refused("memory-negative", _resources(memory="-8Gi"), "spec.resources.memory"),
    Refused("memory-huge-exponent", _resources(memory="3e500"), "spec.resources.memory"),
    Refused("memory-exabytes", _resources(memory="2Ei"), "spec.resources.memory"),
    Refused("memory-bad-suffix", _resources(memory="64GB"), "spec.resources.memory"),
    Refused("shm-negative", _resources(sharedMemorySize="-1Mi"), "spec.resources.sharedMemorySize"),
    Refused(
        "shm-beyond-memory",
        _resources(memory="16Gi", sharedMemorySize="17Gi"),
        "spec.resources.sharedMemorySize",
    ),
    Refused("cache-negative", _spec(model={**MODEL, "cacheSizeLimit": "-5Gi"}), "spec.model.cacheSizeLimit"),
    Refused("cache-huge", _spec(model={**MODEL, "cacheSizeLimit": "9Pi"}), "spec.model.cacheSizeLimit"),
    # Affinity is Kubernetes' own schema, not a free-form object.
    Refused("affinity-string", _scheduling(affinity={"podAffinity": "anywhere"}), "spec.scheduling.affinity"),
    Refused("affinity-list", _scheduling(affinity={"podAntiAffinity": []}), "spec.scheduling.affinity"),
    Refused("affinity-unknown-key", _scheduling(affinity={"gpuAffinity": {}}), "spec.scheduling.affinity"),
    Refused(
        "affinity-operator", _scheduling(affinity=_node_term(key="zone", operator="Matches")), "operator"
    ),
    Refused(
        "affinity-weight-text",
        _scheduling(
            affinity={
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": "high", "preference": {}}]
                }
            }
        ),
        "weight",
    ),
    Refused("affinity-term-missing-key", _scheduling(affinity=_node_term(operator="Exists")), "key"),
    # Tolerations follow the API server's pod rules.
    Refused(
        "toleration-exists-with-value",
        _scheduling(tolerations=[{"key": "gpu", "operator": "Exists", "value": "yes"}]),
        "spec.scheduling.tolerations[0].value",
    ),
    Refused(
        "toleration-seconds-noschedule",
        _scheduling(tolerations=[{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}]),
        "spec.scheduling.tolerations[0].tolerationSeconds",
    ),
    Refused(
        "toleration-keyless-equal",
        _scheduling(tolerations=[{"operator": "Equal", "value": "x"}]),
        "spec.scheduling.tolerations[0].operator",
    ),
    Refused("toleration-effect", _scheduling(tolerations=[{"key": "a", "effect": "Sometimes"}]), "effect"),
    Refused(
        "toleration-key-spaces",
        _scheduling(tolerations=[{"key": "my taint"}]),
        "spec.scheduling.tolerations[0].key",
    ),
    # Node selectors are label keys and values.
    Refused("node-selector-key", _scheduling(nodeSelector={"-zone": "a"}), "spec.scheduling.nodeSelector"),
    Refused(
        "node-selector-slashes", _scheduling(nodeSelector={"a/b/c": "a"}), "spec.scheduling.nodeSelector"
    ),
    Refused(
        "node-selector-value", _scheduling(nodeSelector={"zone": "eu west"}), "spec.scheduling.nodeSelector"
    ),
    # Names of other objects are Kubernetes names.
    Refused(
        "service-account-name", _runtime(serviceAccountName="Runtime_SA"), "spec.runtime.serviceAccountName"
    ),
    Refused("priority-class-name", _scheduling(priorityClassName="high priority"), "priorityClassName"),
    Refused("image-with-spaces", _runtime(image="registry.example/berth runtime:1"), "spec.runtime.image"),
    Refused("image-shell", _runtime(image="img;reboot"), "spec.runtime.image"),
    Refused("pull-secret-name", _runtime(imagePullSecrets=[{"name": "My Secret"}]), "imagePullSecrets"),
    # The runtime's environment and GPU visibility are the operator's.
    Refused("env-home", _runtime(env=[{"name": "HOME", "value": "/"}]), "spec.runtime.env"),
    Refused("env-cache", _runtime(env=[{"name": "XDG_CACHE_HOME", "value": "/x"}]), "spec.runtime.env"),
    Refused("env-hub-online", _runtime(env=[{"name": "HF_HUB_OFFLINE", "value": "0"}]), "spec.runtime.env"),
    Refused(
        "env-all-gpus", _runtime(env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]), "spec.runtime.env"
    ),
    Refused(
        "env-cuda-devices", _runtime(env=[{"name": "CUDA_VISIBLE_DEVICES", "value": "0"}]), "spec.runtime.env"
    ),
    Refused(
        "env-driver-caps",
        _runtime(env=[{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}]),
        "spec.runtime.env",
    ),
    Refused("env-name-equals", _runtime(env=[{"name": "A=B", "value": "1"}]), "spec.runtime.env[0].name"),
    # extraArgs: only the runtime's own unmanaged flags, whole, as --flag=value.
    Refused("args-abbrev-port", _runtime(extraArgs=["--po=9001"]), "spec.runtime.extraArgs[0]"),
    Refused("args-abbrev-model", _runtime(extraArgs=["--mod=/"]), "spec.runtime.extraArgs[0]"),
    Refused("args-abbrev-key", _runtime(extraArgs=["--api-key="]), "spec.runtime.extraArgs[0]"),
    Refused("args-abbrev-tp", _runtime(extraArgs=["--tensor=4"]), "spec.runtime.extraArgs[0]"),
    Refused("args-managed", _runtime(extraArgs=["--max-batch-size=1"]), "spec.runtime.extraArgs[0]"),
    Refused("args-one-token", _runtime(extraArgs=["--seed 7"]), "spec.runtime.extraArgs[0]"),
    Refused("args-shell", _runtime(extraArgs=["$(reboot)"]), "spec.runtime.extraArgs[0]"),
    Refused("args-bare-flag", _runtime(extraArgs=["--seed=1", "--log-level"]), "spec.runtime.extraArgs[1]"),
    Refused("args-bad-value", _runtime(extraArgs=["--seed=seven"]), "spec.runtime.extraArgs[0]"),
    # Sources the fetcher would refuse, or that leave their mount.
    Refused("s3-short-bucket", _source("s3://xy/model"), "spec.model.source"),
    Refused("s3-ip-bucket", _source("s3://10.1.2.3/model"), "spec.model.source"),
    Refused("s3-double-dot", _source("s3://my..models/model"), "spec.model.source"),
    Refused("s3-uppercase", _source("s3://Models/model"), "spec.model.source"),
    Refused("s3-reserved-prefix", _source("s3://sthree-models/model"), "spec.model.source"),
    Refused("s3-reserved-suffix", _source("s3://models--ol-s3/model"), "spec.model.source"),
    Refused("pvc-escape", _source("pvc://weights/../../../etc/passwd"), "spec.model.source"),
    Refused("pvc-encoded-escape", _source("pvc://weights/%2E%2E/%2e%2e/etc"), "spec.model.source"),
    Refused("file-escape", _source("file:///models/../../etc"), "spec.model.source"),
    # Numbers that would break the rules they feed.
    Refused("tensor-parallel-zero", _runtime(tensorParallelSize=0), "spec.runtime.tensorParallelSize"),
    Refused(
        "tensor-parallel-uneven",
        _spec(runtime={"tensorParallelSize": 3}, resources={"gpu": {"count": 4}}),
        "spec.resources.gpu.count",
    ),
    Refused("rollout-no-room", _spec(rollout={"maxSurge": 0, "maxUnavailable": 0}), "spec.rollout.maxSurge"),
]

REPORTED: list[Reported] = [
    # The pod template passes the CRD but the API server's pod validation refuses it.
    Reported(
        "affinity-in-without-values",
        _scheduling(affinity=_node_term(key="zone", operator="In")),
        "Accepted",
        "ApplyFailed",
        "values",
    ),
    Reported(
        "affinity-weight-zero",
        _scheduling(
            affinity={
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 0,
                            "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]},
                        }
                    ]
                }
            }
        ),
        "Accepted",
        "ApplyFailed",
        "weight",
    ),
    Reported(
        "affinity-empty-topology",
        _scheduling(
            affinity={
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": ""}
                    ]
                }
            }
        ),
        "Accepted",
        "ApplyFailed",
        "topologyKey",
    ),
    # References to objects that do not exist.
    Reported(
        "credentials-secret-missing",
        {
            "model": {
                "name": "m",
                "source": "hf://org/model",
                "credentialsSecretRef": {"name": "no-such-token"},
            }
        },
        "Accepted",
        "SecretNotFound",
        "no-such-token",
    ),
    Reported(
        "pvc-missing",
        _source("pvc://no-such-claim/llama"),
        "Ready",
        "Unschedulable",
        "no-such-claim",
    ),
]
REPORTED += [
    # The ReplicaSet cannot create pods: the cause reaches status from the Deployment's ReplicaFailure.
    Reported(
        "service-account-missing",
        _runtime(serviceAccountName="no-such-account"),
        "Degraded",
        "FailedCreate",
        "no-such-account",
    ),
    Reported(
        "priority-class-missing",
        _scheduling(priorityClassName="no-such-priority"),
        "Degraded",
        "FailedCreate",
        "no-such-priority",
    ),
]
