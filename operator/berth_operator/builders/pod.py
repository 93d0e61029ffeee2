"""The runtime pod template: GPU placement, model cache and fetch, probes, drain and hardening.

A shared model cache (spec.model.cache.mode Node or PVC) adds its volume, mounts, fetch flags and,
for Node, an init container; those pieces are in model_cache.py.
"""

from __future__ import annotations

import math
from typing import Any

from berth_operator.api.resources import GPU_PRODUCT_LABEL, GPU_RESOURCE
from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import REVISION_LABEL, common_labels, revision_hash
from berth_operator.builders.model_cache import (
    LINK_VOLUME_SIZE_LIMIT,
    cache_flags,
    held_serve_command,
    prepare_container,
    shared_cache_mount,
    shared_cache_volume,
    uses_shared_cache,
)
from berth_operator.builders.runtime_args import (
    API_KEY_DIR,
    MODEL_CACHE_DIR,
    PVC_MOUNT_ROOT,
    fetch_command,
    pvc_claim_and_path,
    serve_command,
)

RUNTIME_CONTAINER = "runtime"
FETCH_CONTAINER = "fetch-model"
CONFIG_DIR = "/etc/berth/config"
RUNTIME_USER_ID = 65532  # the runtime image's user (runtime_image/Dockerfile)
# Time beyond the pre-stop delay and the drain timeout before the kubelet kills the container.
SHUTDOWN_MARGIN_SECONDS = 15
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"


# On a non-zero exit the kubelet takes the log's tail as the termination message: the runtime prints
# why it stopped (a refused flag or model: exit 2) as its last line, and pod status, hence
# InferenceDeployment status, then says it.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"


def _container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_USER_ID,
        "runAsGroup": RUNTIME_USER_ID,
        "fsGroup": RUNTIME_USER_ID,
        # A large model volume must not be chown'ed file by file on every start.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _writable_home_env() -> list[dict[str, str]]:
    # The root filesystem is read-only: caches (Triton, Hugging Face) go to the /tmp emptyDir.
    return [{"name": "HOME", "value": "/tmp"}, {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"}]


def _volumes(context: BuildContext, config_map_name: str) -> list[dict[str, Any]]:
    spec = context.spec
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shared_memory_size},
        },
        {"name": "runtime-config", "configMap": {"name": config_map_name}},
    ]
    if uses_shared_cache(context):
        volumes.append({"name": "model-cache", "emptyDir": {"sizeLimit": LINK_VOLUME_SIZE_LIMIT}})
        volumes.append(shared_cache_volume(context))
    elif spec.model.is_downloaded:
        cache: dict[str, Any] = {}
        if spec.model.cache_size_limit is not None:
            cache["sizeLimit"] = spec.model.cache_size_limit
        volumes.append({"name": "model-cache", "emptyDir": cache})
    elif spec.model.source.startswith("pvc://"):
        claim, _ = pvc_claim_and_path(spec.model.source)
        volumes.append({"name": "model-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    if spec.serving.api_key_secret_ref is not None:
        reference = spec.serving.api_key_secret_ref
        volumes.append(
            {
                "name": "api-key",
                "secret": {
                    "secretName": reference.name,
                    "items": [{"key": reference.key, "path": reference.key}],
                    "defaultMode": 0o440,
                },
            }
        )
    return volumes


def _runtime_mounts(context: BuildContext) -> list[dict[str, Any]]:
    spec = context.spec
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "runtime-config", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    if spec.model.is_downloaded:
        mounts.append({"name": "model-cache", "mountPath": MODEL_CACHE_DIR, "readOnly": True})
        if uses_shared_cache(context):
            mounts.append(shared_cache_mount(read_only=True))
    elif spec.model.source.startswith("pvc://"):
        claim, _ = pvc_claim_and_path(spec.model.source)
        mounts.append({"name": "model-pvc", "mountPath": f"{PVC_MOUNT_ROOT}/{claim}", "readOnly": True})
    if spec.serving.api_key_secret_ref is not None:
        mounts.append({"name": "api-key", "mountPath": API_KEY_DIR, "readOnly": True})
    return mounts


def _fetch_container(context: BuildContext) -> dict[str, Any]:
    spec = context.spec
    shared = uses_shared_cache(context)
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": context.runtime_image,
        "command": fetch_command(spec) + (cache_flags(context) if shared else []),
        "env": _writable_home_env(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model-cache", "mountPath": MODEL_CACHE_DIR},
            *([shared_cache_mount(read_only=False)] if shared else []),
        ],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}},
        "securityContext": _container_security_context(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }
    if spec.model.credentials_secret_ref is not None:
        # The secret's keys become env vars of this container only; values never enter the pod spec.
        container["envFrom"] = [{"secretRef": {"name": spec.model.credentials_secret_ref.name}}]
    if spec.runtime.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.runtime.image_pull_policy
    return container


def _resources(context: BuildContext) -> dict[str, Any]:
    resources = context.spec.resources
    gpus = str(resources.gpu.count)
    requests: dict[str, str] = {GPU_RESOURCE: gpus} if resources.gpu.count > 0 else {}
    limits: dict[str, str] = {GPU_RESOURCE: gpus} if resources.gpu.count > 0 else {}
    if resources.cpu is not None:
        requests["cpu"] = resources.cpu
    if resources.memory is not None:
        requests["memory"] = resources.memory
        limits["memory"] = resources.memory
    return {"requests": requests, "limits": limits}


def _probes(context: BuildContext) -> dict[str, Any]:
    startup = context.spec.runtime.startup
    return {
        "startupProbe": {
            "httpGet": {"path": READY_PATH, "port": "http"},
            "periodSeconds": startup.period_seconds,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(startup.timeout_seconds / startup.period_seconds),
        },
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }


def _runtime_container(context: BuildContext) -> dict[str, Any]:
    spec = context.spec
    container: dict[str, Any] = {
        "name": RUNTIME_CONTAINER,
        "image": context.runtime_image,
        "command": held_serve_command(serve_command(spec))
        if uses_shared_cache(context)
        else serve_command(spec),
        "ports": [
            {"name": "http", "containerPort": spec.serving.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec.serving.metrics_port, "protocol": "TCP"},
        ],
        "env": [
            *_writable_home_env(),
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            *({"name": variable.name, "value": variable.value} for variable in spec.runtime.env),
        ],
        "resources": _resources(context),
        "volumeMounts": _runtime_mounts(context),
        **_probes(context),
        "securityContext": _container_security_context(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }
    if spec.serving.pre_stop_delay_seconds > 0:
        # Keep serving while endpoints drop the pod; the kubelet sleeps, no shell needed in the image.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": spec.serving.pre_stop_delay_seconds}}}
    if spec.runtime.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.runtime.image_pull_policy
    return container


def _tolerations(context: BuildContext) -> list[dict[str, Any]]:
    extra = [toleration.to_wire() for toleration in context.spec.scheduling.tolerations]
    if context.spec.resources.gpu.count == 0:
        return extra  # a CPU replica has no business on tainted GPU nodes
    gpu_toleration = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    return [gpu_toleration, *extra]


def pod_template(context: BuildContext, config_map_name: str) -> dict[str, Any]:
    """The pod template of the runtime Deployment."""
    spec = context.spec
    node_selector = dict(spec.scheduling.node_selector)
    if spec.resources.gpu.product is not None:
        node_selector[GPU_PRODUCT_LABEL] = spec.resources.gpu.product
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "terminationGracePeriodSeconds": spec.serving.pre_stop_delay_seconds
        + spec.serving.drain_timeout_seconds
        + SHUTDOWN_MARGIN_SECONDS,
        "containers": [_runtime_container(context)],
        "volumes": _volumes(context, config_map_name),
        "tolerations": _tolerations(context),
    }
    if spec.model.is_downloaded:
        pod_spec["initContainers"] = [_fetch_container(context)]
        if uses_shared_cache(context) and spec.model.cache_mode == "Node":
            pod_spec["initContainers"].insert(0, prepare_container(context, RUNTIME_USER_ID))
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if spec.scheduling.affinity:
        pod_spec["affinity"] = spec.scheduling.affinity
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    if spec.runtime.service_account_name:
        pod_spec["serviceAccountName"] = spec.runtime.service_account_name
    if spec.runtime.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret.name} for secret in spec.runtime.image_pull_secrets]
    return {
        "metadata": {
            "labels": {**common_labels(context.owner.name), REVISION_LABEL: revision_hash(context)},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(spec.serving.metrics_port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }
