"""A shared model cache in the pod template: Node mode's hostPath and its root-owned hand-over step,
PVC mode's claim, the fetch flags the runtime parses, and the mounts (read-write only in the init
containers, read-only in the runtime); Pod mode, the default, is the pod-local emptyDir as before."""

from __future__ import annotations

from typing import Any

import pytest

from berth_operator.builders import BuildContext
from berth_operator.builders.deployment import build_deployment
from berth_operator.builders.labels import revision_hash
from berth_operator.builders.model_cache import SHARED_CACHE_DIR
from berth_operator.builders.runtime_args import serve_command
from berth_operator.settings_model_cache import ModelCacheSettings
from berth_runtime.cli import build_parser
from tests.unit.builders.conftest import build_context

NODE_CACHE = ModelCacheSettings(root="/var/lib/berth/models", budget_bytes=500 * 2**30)
SHARED_READ_ONLY = {"name": "shared-model-cache", "mountPath": SHARED_CACHE_DIR, "readOnly": True}
SHARED_READ_WRITE = {"name": "shared-model-cache", "mountPath": SHARED_CACHE_DIR}


def pod(overrides: dict[str, Any], cache: ModelCacheSettings = NODE_CACHE) -> dict[str, Any]:
    context = build_context(overrides)
    context = BuildContext(
        context.owner, context.spec, context.replicas, context.default_runtime_image, cache
    )
    template = build_deployment(context, "chat-runtime")["spec"]["template"]["spec"]
    return template  # type: ignore[no-any-return]


def containers(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    every = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
    return {container["name"]: container for container in every}


def volume(pod_spec: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((each for each in pod_spec["volumes"] if each["name"] == name), None)


def test_pod_mode_is_the_default_and_shares_nothing() -> None:
    pod_spec = pod({})
    assert [container["name"] for container in pod_spec["initContainers"]] == ["fetch-model"]
    assert volume(pod_spec, "model-cache") == {"name": "model-cache", "emptyDir": {}}
    assert volume(pod_spec, "shared-model-cache") is None
    assert "--cache-root" not in containers(pod_spec)["fetch-model"]["command"]
    assert "cache" not in build_context({}).spec.model.to_wire(), (
        "no new key: existing revisions keep their hash"
    )


def test_node_mode_mounts_a_host_folder_read_write_only_in_the_init_containers() -> None:
    pod_spec = pod({"model": {"cache": {"mode": "Node"}}})
    assert volume(pod_spec, "shared-model-cache") == {
        "name": "shared-model-cache",
        "hostPath": {"path": "/var/lib/berth/models", "type": "DirectoryOrCreate"},
    }
    assert volume(pod_spec, "model-cache") == {"name": "model-cache", "emptyDir": {"sizeLimit": "1Mi"}}
    assert [container["name"] for container in pod_spec["initContainers"]] == [
        "prepare-model-cache",
        "fetch-model",
    ]
    by_name = containers(pod_spec)
    assert by_name["prepare-model-cache"]["volumeMounts"] == [SHARED_READ_WRITE]
    assert SHARED_READ_WRITE in by_name["fetch-model"]["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/models"} in by_name["fetch-model"]["volumeMounts"]
    runtime_mounts = by_name["runtime"]["volumeMounts"]
    assert SHARED_READ_ONLY in runtime_mounts
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in runtime_mounts
    assert by_name["fetch-model"]["command"][-4:] == [
        "--cache-root", SHARED_CACHE_DIR, "--cache-budget-bytes", str(500 * 2**30),
    ]  # fmt: skip


def test_in_a_shared_mode_the_server_starts_through_hold_entry_and_pod_mode_is_unchanged() -> None:
    serve = serve_command(build_context({}).spec)
    assert containers(pod({}))["runtime"]["command"] == serve
    held = containers(pod({"model": {"cache": {"mode": "Node"}}}))["runtime"]["command"]
    assert held == ["python", "-m", "berth_runtime.fetch.hold_entry", "/models/model", "--", *serve]


def test_only_the_hand_over_step_runs_as_root_and_it_may_only_chown() -> None:
    pod_spec = pod({"model": {"cache": {"mode": "Node"}}})
    by_name = containers(pod_spec)
    prepare = by_name["prepare-model-cache"]
    assert prepare["command"] == ["python", "-m", "berth_runtime.fetch.cache_root", SHARED_CACHE_DIR, "65532"]
    assert prepare["securityContext"] == {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for name in ("fetch-model", "runtime"):
        context = by_name[name]["securityContext"]
        assert context["runAsNonRoot"] is True and context["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["securityContext"]["runAsUser"] == 65532


def test_pvc_mode_shares_a_claim_with_its_own_budget_and_needs_no_root_step() -> None:
    pod_spec = pod({"model": {"cache": {"mode": "PVC", "claimName": "model-cache-rwx", "budget": "2Ti"}}})
    assert volume(pod_spec, "shared-model-cache") == {
        "name": "shared-model-cache",
        "persistentVolumeClaim": {"claimName": "model-cache-rwx"},
    }
    assert [container["name"] for container in pod_spec["initContainers"]] == ["fetch-model"]
    by_name = containers(pod_spec)
    assert SHARED_READ_ONLY in by_name["runtime"]["volumeMounts"]
    assert by_name["fetch-model"]["command"][-2:] == ["--cache-budget-bytes", str(2 * 2**40)]


def test_pvc_mode_without_a_budget_evicts_nothing() -> None:
    pod_spec = pod({"model": {"cache": {"mode": "PVC", "claimName": "model-cache-rwx"}}})
    assert containers(pod_spec)["fetch-model"]["command"][-2:] == ["--cache-root", SHARED_CACHE_DIR]


@pytest.mark.parametrize(
    ("cache", "expected_budget"),
    [({"mode": "Node"}, 500 * 2**30), ({"mode": "PVC", "claimName": "shared", "budget": "1.5Gi"}, 3 * 2**29)],
)
def test_the_runtime_parses_the_rendered_cache_flags(cache: dict[str, Any], expected_budget: int) -> None:
    command = containers(pod({"model": {"cache": cache}}))["fetch-model"]["command"]
    arguments = build_parser().parse_args(command[3:])
    assert (str(arguments.cache_root), arguments.cache_budget_bytes) == (SHARED_CACHE_DIR, expected_budget)
    assert str(arguments.destination) == "/models/model"


def test_node_mode_without_an_operator_root_is_not_built() -> None:
    with pytest.raises(ValueError, match="needs the operator's BERTH_MODEL_CACHE_ROOT"):
        pod({"model": {"cache": {"mode": "Node"}}}, cache=ModelCacheSettings())


def test_changing_the_cache_mode_rolls_out_new_pods() -> None:
    assert revision_hash(build_context({})) != revision_hash(
        build_context({"model": {"cache": {"mode": "Node"}}})
    )
