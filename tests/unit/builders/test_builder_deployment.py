"""The runtime Deployment: GPU placement, model fetch, probes, drain, labels, revision and hardening."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from berth_operator.api.runtime import is_reserved_env_name
from berth_operator.builders import BuildContext
from berth_operator.builders.deployment import build_deployment
from berth_operator.builders.labels import REVISION_LABEL, revision_hash

ContextFactory = Callable[..., BuildContext]


def _deployment(
    make_context: ContextFactory, overrides: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return build_deployment(make_context(overrides, **kw), "chat-runtime")


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _runtime(deployment: dict[str, Any]) -> dict[str, Any]:
    return _pod(deployment)["containers"][0]  # type: ignore[no-any-return]


def test_gpu_request_equals_limit_and_product_selects_nodes(make_context: ContextFactory) -> None:
    deployment = _deployment(
        make_context, {"resources": {"gpu": {"count": 2}}, "runtime": {"tensorParallelSize": 2}}
    )
    resources = _runtime(deployment)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["cpu"] == "8"
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "64Gi"
    assert "cpu" not in resources["limits"]
    assert _pod(deployment)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in _pod(deployment)[
        "tolerations"
    ]


def test_without_a_product_any_gpu_node_fits(make_context: ContextFactory) -> None:
    pod = _pod(_deployment(make_context, {"resources": {"gpu": {"product": None}}}))
    assert "nodeSelector" not in pod


def test_scheduling_fields_pass_through(make_context: ContextFactory) -> None:
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    pod = _pod(
        _deployment(
            make_context,
            {
                "scheduling": {
                    "nodeSelector": {"pool": "gpu"},
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
                    ],
                    "affinity": affinity,
                    "priorityClassName": "inference",
                },
                "runtime": {"serviceAccountName": "reader", "imagePullSecrets": [{"name": "regcred"}]},
            },
        )
    )
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["affinity"] == affinity
    assert pod["priorityClassName"] == "inference"
    assert pod["serviceAccountName"] == "reader"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_shared_memory_is_a_memory_backed_empty_dir(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context, {"resources": {"sharedMemorySize": "4Gi"}})
    volumes = {volume["name"]: volume for volume in _pod(deployment)["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _runtime(deployment)["volumeMounts"]


@pytest.mark.parametrize("source", ["hf://org/chat", "s3://bucket/chat"])
def test_downloaded_sources_fetch_in_an_init_container(make_context: ContextFactory, source: str) -> None:
    overrides = {"model": {"source": source, "revision": None, "credentialsSecretRef": {"name": "creds"}}}
    deployment = _deployment(make_context, overrides)
    pod = _pod(deployment)
    (fetch,) = pod["initContainers"]
    assert fetch["command"][:5] == ["python", "-m", "berth_runtime", "fetch", source]
    assert fetch["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert {"name": "model-cache", "mountPath": "/models"} in fetch["volumeMounts"]
    runtime = _runtime(deployment)
    assert "envFrom" not in runtime  # credentials reach the download only
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in runtime["volumeMounts"]
    assert "creds" not in str(runtime)


def test_model_cache_size_limit(make_context: ContextFactory) -> None:
    volumes = _pod(_deployment(make_context, {"model": {"cacheSizeLimit": "100Gi"}}))["volumes"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "100Gi"}} in volumes


def test_pvc_source_mounts_the_claim_read_only_and_fetches_nothing(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context, {"model": {"source": "pvc://weights/llama", "revision": None}})
    pod = _pod(deployment)
    assert "initContainers" not in pod
    assert {"name": "model-pvc", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}} in pod[
        "volumes"
    ]
    assert {"name": "model-pvc", "mountPath": "/mnt/pvc/weights", "readOnly": True} in _runtime(deployment)[
        "volumeMounts"
    ]


def test_file_source_uses_the_image_directory(make_context: ContextFactory) -> None:
    pod = _pod(_deployment(make_context, {"model": {"source": "file:///opt/model", "revision": None}}))
    assert "initContainers" not in pod
    assert not any(volume["name"] in ("model-cache", "model-pvc") for volume in pod["volumes"])


def test_probes_ports_and_scrape_annotations(make_context: ContextFactory) -> None:
    deployment = _deployment(
        make_context, {"runtime": {"startup": {"timeoutSeconds": 905, "periodSeconds": 10}}}
    )
    runtime = _runtime(deployment)
    assert runtime["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert runtime["startupProbe"]["failureThreshold"] * runtime["startupProbe"]["periodSeconds"] >= 905
    assert runtime["startupProbe"]["failureThreshold"] == 91
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert runtime["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert [(port["name"], port["containerPort"]) for port in runtime["ports"]] == [
        ("http", 8000),
        ("metrics", 8001),
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8001",
        "prometheus.io/path": "/metrics",
    }


def test_drain_time_covers_pre_stop_and_drain_timeout(make_context: ContextFactory) -> None:
    deployment = _deployment(
        make_context, {"serving": {"drainTimeoutSeconds": 60, "preStopDelaySeconds": 10}}
    )
    assert _runtime(deployment)["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert _pod(deployment)["terminationGracePeriodSeconds"] == 10 + 60 + 15
    no_delay = _deployment(make_context, {"serving": {"preStopDelaySeconds": 0}})
    assert "lifecycle" not in _runtime(no_delay)


def test_restricted_security_context(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context)
    pod = _pod(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in [*pod["containers"], *pod["initContainers"]]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True


def test_a_failing_container_leaves_its_logs_tail_as_the_termination_message(
    make_context: ContextFactory,
) -> None:
    # the runtime's last line says why it stopped (exit 2: a refused flag or model); status reads it
    pod = _pod(_deployment(make_context))
    for container in [*pod["containers"], *pod["initContainers"]]:
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_rolling_update_never_takes_the_last_ready_replica_down(make_context: ContextFactory) -> None:
    spec = _deployment(make_context, replicas=1)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    custom = _deployment(
        make_context,
        {"rollout": {"maxSurge": 0, "maxUnavailable": 1, "progressDeadlineSeconds": 600}},
        replicas=3,
    )
    assert custom["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert custom["spec"]["progressDeadlineSeconds"] == 600


@pytest.mark.parametrize(
    ("max_surge", "max_unavailable", "replicas", "rendered"),
    [
        (1, 3, 3, {"maxSurge": 1, "maxUnavailable": 2}),  # never all three at once
        (0, 5, 3, {"maxSurge": 0, "maxUnavailable": 2}),
        (2, 1, 4, {"maxSurge": 2, "maxUnavailable": 1}),  # within bounds: as written
        (0, 1, 1, {"maxSurge": 1, "maxUnavailable": 0}),  # one replica: surged, never taken down
        (0, 1, 0, {"maxSurge": 1, "maxUnavailable": 0}),  # scaled to zero: nothing to take down
        (3, 0, 1, {"maxSurge": 3, "maxUnavailable": 0}),
    ],
)
def test_max_unavailable_is_capped_so_one_ready_replica_always_stays(
    make_context: ContextFactory,
    max_surge: int,
    max_unavailable: int,
    replicas: int,
    rendered: dict[str, int],
) -> None:
    rollout = {"rollout": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}}
    deployment = _deployment(make_context, rollout, replicas=replicas)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == rendered


def test_labels_selector_and_owner(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "berth-runtime"
    assert labels["app.kubernetes.io/instance"] == "chat"
    assert labels["app.kubernetes.io/managed-by"] == "berth"
    assert labels["app.kubernetes.io/component"] == "inference-server"
    assert labels[REVISION_LABEL] == revision_hash(make_context())
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "berth-runtime",
        "app.kubernetes.io/instance": "chat",
    }
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "InferenceDeployment"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
    assert deployment["metadata"]["namespace"] == "ml"


@pytest.mark.parametrize(
    ("overrides", "changes_revision"),
    [
        ({"model": {"revision": "def456"}}, True),
        ({"model": {"name": "other"}}, True),
        ({"runtime": {"image": "registry.example/berth-runtime:v2"}}, True),
        ({"runtime": {"maxBatchSize": 32}}, True),
        ({"resources": {"memory": "80Gi"}}, True),
        ({"serving": {"port": 9000}}, True),
        ({"replicas": 5}, False),
        ({"autoscaling": {"maxReplicas": 9}}, False),
        ({"rollout": {"maxSurge": 2}}, False),
    ],
)
def test_revision_changes_exactly_when_a_replica_would(
    make_context: ContextFactory, overrides: dict[str, Any], changes_revision: bool
) -> None:
    assert (revision_hash(make_context(overrides)) != revision_hash(make_context())) is changes_revision


def test_revision_is_stable_and_follows_the_resolved_image(make_context: ContextFactory) -> None:
    assert revision_hash(make_context()) == revision_hash(make_context())
    explicit = make_context({"runtime": {"image": "registry.example/berth-runtime:test"}})
    assert revision_hash(explicit) == revision_hash(make_context())  # same image, however it was chosen


def test_runtime_env_and_image(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context, {"runtime": {"env": [{"name": "NCCL_DEBUG", "value": "INFO"}]}})
    runtime = _runtime(deployment)
    assert runtime["image"] == "registry.example/berth-runtime:test"
    assert {"name": "NCCL_DEBUG", "value": "INFO"} in runtime["env"]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in runtime["env"]


def test_api_key_secret_is_mounted_not_inlined(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context, {"serving": {"apiKeySecretRef": {"name": "chat-key"}}})
    volumes = {volume["name"]: volume for volume in _pod(deployment)["volumes"]}
    assert volumes["api-key"]["secret"]["secretName"] == "chat-key"
    assert volumes["api-key"]["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    assert {"name": "api-key", "mountPath": "/etc/berth/api-key", "readOnly": True} in _runtime(deployment)[
        "volumeMounts"
    ]


def test_pods_run_as_the_runtime_images_user(make_context: ContextFactory) -> None:
    dockerfile = Path(__file__).resolve().parents[3] / "runtime_image" / "Dockerfile"
    users = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("USER ")]
    user, _, group = users[-1].partition(":")
    context = _pod(_deployment(make_context))["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (
        int(user),
        int(group),
        int(group),
    )


def test_every_variable_the_operator_sets_is_one_the_spec_may_not_set(make_context: ContextFactory) -> None:
    # runtime.env is refused for these names at admission; a new one here must be reserved there too.
    pod = _deployment(make_context)["spec"]["template"]["spec"]
    for container in [*pod["containers"], *pod.get("initContainers", [])]:
        for variable in container.get("env", []):
            assert is_reserved_env_name(variable["name"]), variable["name"]


def test_zero_gpus_is_a_cpu_replica_that_asks_for_no_gpu(make_context: ContextFactory) -> None:
    deployment = _deployment(make_context, {"resources": {"gpu": {"count": 0, "product": None}}})
    pod = deployment["spec"]["template"]["spec"]
    runtime = pod["containers"][0]
    assert "nvidia.com/gpu" not in runtime["resources"]["requests"]
    assert "nvidia.com/gpu" not in runtime["resources"]["limits"]
    assert all(toleration.get("key") != "nvidia.com/gpu" for toleration in pod["tolerations"])
    assert "nvidia.com/gpu.product" not in pod.get("nodeSelector", {})
    device = runtime["command"].index("--device")
    assert runtime["command"][device + 1] == "cpu"
