"""Rollouts whose new pods cannot simply run beside the old ones, on the local control plane: a
crash-looping rolling update, and a GPU pool with no free GPU.

Why: these are the rollouts that strand a plain Deployment. One whose new revision crash-loops must be
reverted to the last ready revision once its Deployment misses the progress deadline, saying why; one
on a pool whose GPUs are all in use must replace a replica at a time where a plain Deployment's surge
pod stays Pending for ever -- shown side by side on two such pools -- and a canary there must take its
GPU from the stable side. The crash is the simulated kubelet's, asked for through spec.runtime.env
(tests/cluster/stages/pod-crash.yaml), so only the new revision's pods crash.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from tests.cluster.simulation import POD_FAIL_ENV
from tests.integration.idep_reads import idep_manifest
from tests.integration.operator_process import OperatorProcess
from tests.integration.rollout_support import (
    NAME,
    TIMEOUT,
    Sampler,
    ask,
    canary_manifest,
    events_with_reason,
    fewest_ready,
    gpu_node,
    snapshot,
    start_stable,
    template_revision,
    wait_no_pods_on,
    wait_only_primary_on,
    wait_progressing,
    wait_rollout,
    wait_started,
    wait_step_analysing,
    with_model_revision,
)
from tests.integration.support import ClusterAccess, wait_for

pytestmark = pytest.mark.integration

CRASH_MESSAGE = "CUDA error: out of memory"


def test_a_crash_looping_rolling_update_is_reverted_after_the_progress_deadline(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    replicas, deadline = 2, 60
    rollout = {"strategy": "Rolling", "progressDeadlineSeconds": deadline}
    manifest = idep_manifest(NAME, replicas=replicas, rollout=rollout)
    stable = start_stable(crds, namespace, manifest)
    crashing = {
        **manifest,
        "spec": {**manifest["spec"], "runtime": {"env": [{"name": POD_FAIL_ENV, "value": CRASH_MESSAGE}]}},
    }

    with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
        crds.apply(crashing, namespace=namespace)
        started = time.monotonic()
        target = wait_started(crds, namespace, "Rolling")

        def crash_looping_pod() -> bool:
            return any(
                (status.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
                for pod in crds.get("pods", namespace=namespace, **{"berth.dev/revision": target})
                for status in pod.get("status", {}).get("containerStatuses", [])
            )

        wait_for(crash_looping_pod, TIMEOUT, f"a crash-looping pod of revision {target}")
        final = wait_rollout(
            crds,
            namespace,
            NAME,
            lambda rollout: rollout.get("phase") == "RolledBack",
            deadline + 60,
            "the rolling update reverted",
        )
        reverted_after = time.monotonic() - started
        wait_only_primary_on(crds, namespace, stable, replicas)
    seen = sampler.values

    assert reverted_after >= deadline, reverted_after
    assert final["failedRevision"] == target and final["stableRevision"] == stable
    assert f"not ready within progressDeadlineSeconds ({deadline} s)" in final["message"]
    assert CRASH_MESSAGE in final["message"], final["message"]
    assert final["history"][-1]["outcome"] == "RolledBack"
    reported = wait_progressing(crds, namespace, "RolledBack")
    assert CRASH_MESSAGE in reported["message"]
    primary = snapshot(crds, namespace, NAME).primary
    assert template_revision(primary) == stable
    wait_for(
        lambda: not crds.get("pods", namespace=namespace, **{"berth.dev/revision": target}),
        30,
        f"no pod of revision {target} left",
    )
    # maxUnavailable 0: the crashing surge pod never cost a ready replica.
    assert min(fewest_ready(seen)) >= replicas, fewest_ready(seen)


L4, L4_MEMORY_MIB = "NVIDIA-L4", 23034
L40S, L40S_MEMORY_MIB = "NVIDIA-L40S", 46068
"""Products no other test uses: their nodes are this test's alone, every GPU of them filled."""


def plain_deployment(name: str, product: str, resources: dict[str, Any], marker: str) -> dict[str, Any]:
    """A Deployment of `resources` on `product` that rolls as Kubernetes' default would (surge one,
    none unavailable); `marker` changes its template."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"test.berth.dev/marker": marker}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": product},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {"name": "runtime", "image": "berth/runtime:test", "resources": resources}
                    ],
                },
            },
        },
    }


def waiting_for_gpu(pod: dict[str, Any]) -> bool:
    return any(
        entry.get("type") == "PodScheduled"
        and entry.get("status") == "False"
        and "Insufficient nvidia.com/gpu" in str(entry.get("message"))
        for entry in pod.get("status", {}).get("conditions", [])
    )


def test_a_rolling_update_on_a_full_gpu_pool_replaces_where_a_plain_deployment_is_stuck(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    replicas = 2
    with (
        gpu_node(crds, L4, replicas, L4_MEMORY_MIB) as idep_node,
        gpu_node(crds, L40S, replicas, L40S_MEMORY_MIB) as plain_node,
    ):
        try:
            manifest = idep_manifest(NAME, replicas=replicas)
            manifest["spec"]["resources"]["gpu"]["product"] = L4
            stable = start_stable(crds, namespace, manifest)
            runtime = snapshot(crds, namespace, NAME).primary
            assert runtime is not None
            resources = runtime["spec"]["template"]["spec"]["containers"][0]["resources"]
            crds.apply(plain_deployment("plain", L40S, resources, "v1"), namespace=namespace)
            crds.kubectl("rollout", "status", "deployment/plain", "--timeout=90s", namespace=namespace)

            with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
                crds.apply(plain_deployment("plain", L40S, resources, "v2"), namespace=namespace)
                crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
                started = time.time()
                target = wait_started(crds, namespace, "Rolling")
                final = wait_rollout(
                    crds,
                    namespace,
                    NAME,
                    lambda rollout: (
                        rollout.get("phase") == "Stable" and rollout.get("stableRevision") == target
                    ),
                    TIMEOUT,
                    f"revision {target} rolled out on the full pool",
                )
                wait_only_primary_on(crds, namespace, target, replicas)
                replaced_in = time.time() - started
            seen = sampler.values

            assert stable != target
            assert final["history"][-1]["outcome"] == "Completed"
            assert any(s.rollout.get("replacingWithoutSurge") is True for s in seen)
            assert any(s.rollout.get("summary") == "Rolling (replacing)" for s in seen)
            strategies = [
                s.primary["spec"]["strategy"]["rollingUpdate"]
                for s in seen
                if s.primary is not None and s.rollout.get("replacingWithoutSurge")
            ]
            assert {"maxSurge": 0, "maxUnavailable": 1} in strategies, strategies
            (message,) = events_with_reason(crds, namespace, NAME, "ReplacingWithoutSurge")
            assert "waits for a GPU no node has free" in message
            # Never fewer than one ready replica: replacement takes one down at a time.
            assert min(fewest_ready(seen)) >= replicas - 1, fewest_ready(seen)

            # The plain Deployment, same pod resources, same full pool: still stuck with a Pending pod.
            plain = crds.get("deployment", "plain", namespace=namespace)
            pods = crds.get("pods", namespace=namespace, app="plain")
            pending = [pod for pod in pods if waiting_for_gpu(pod)]
            assert len(pending) == 1, [pod["status"] for pod in pods]
            assert pending[0]["metadata"]["annotations"]["test.berth.dev/marker"] == "v2"
            # ... and was so for all the time the InferenceDeployment took to replace both replicas.
            pending_since = datetime.fromisoformat(
                pending[0]["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            )
            assert time.time() - pending_since.timestamp() >= replaced_in - 1, replaced_in
            assert plain["status"].get("updatedReplicas") == 1 and plain["status"].get("readyReplicas") == 2
            old = [pod for pod in pods if pod["metadata"]["annotations"]["test.berth.dev/marker"] == "v1"]
            assert len(old) == replicas
        finally:
            crds.kubectl("delete", "deployment", "plain", "--ignore-not-found", namespace=namespace)
            crds.kubectl("delete", "idep", NAME, "--ignore-not-found", "--timeout=60s", namespace=namespace)
            wait_no_pods_on(crds, idep_node, 60)
            wait_no_pods_on(crds, plain_node, 60)


def test_a_canary_on_a_full_gpu_pool_takes_its_replica_from_the_stable_side(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    replicas = 2  # on a node of 2 GPUs; promoted by hand (no Prometheus), so no analysis holds it
    with gpu_node(crds, L4, replicas, L4_MEMORY_MIB) as node:
        try:
            manifest = canary_manifest(replicas, [{"replicas": 1, "pauseSeconds": 3600}])
            manifest["spec"]["resources"]["gpu"]["product"] = L4
            stable = start_stable(crds, namespace, manifest)
            with Sampler(lambda: snapshot(crds, namespace, NAME)) as sampler:
                crds.apply(with_model_revision(manifest, "v2"), namespace=namespace)
                target = wait_started(crds, namespace, "Canary")
                wait_step_analysing(crds, namespace)
                ask(crds, namespace, "promote")
                wait_rollout(
                    crds,
                    namespace,
                    NAME,
                    lambda rollout: (
                        rollout.get("phase") == "Stable" and rollout.get("stableRevision") == target
                    ),
                    TIMEOUT,
                    f"revision {target} promoted on the full pool",
                )
                wait_only_primary_on(crds, namespace, target, replicas)
            seen = sampler.values

            assert stable != target
            # The canary pod found no GPU, so the stable side gave one up (the one replica the
            # disruption budget allows) instead of the canary waiting for ever.
            during_step = [s for s in seen if s.rollout.get("phase") == "Canary"]
            assert any(s.canary_replicas == 1 and s.primary_replicas == 1 for s in during_step), during_step
            replacing = events_with_reason(crds, namespace, NAME, "ReplacingWithoutSurge")
            assert any(
                message.startswith("a canary pod waits for a GPU no node has free") for message in replacing
            ), replacing
            assert any(s.rollout.get("summary") == "Promoting (replacing)" for s in seen)
            assert min(fewest_ready(seen)) >= replicas - 1, fewest_ready(seen)
        finally:
            crds.kubectl("delete", "idep", NAME, "--ignore-not-found", "--timeout=60s", namespace=namespace)
            wait_no_pods_on(crds, node, 60)
