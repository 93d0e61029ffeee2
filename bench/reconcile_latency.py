"""Benchmark: operator reconcile latency on the local control plane, created -> status Ready.

For each count (default 1, 100, 500) a fresh namespace gets that many InferenceDeployments in one
``kubectl apply``; a watch records when each appears and when its status first says Ready (pods
Ready with zero readiness delay). Prints p50/p99 latency, the time until all are Ready, and the
operator's CPU seconds and peak RSS for the round (a fresh operator process per round; with several
--api-concurrency values, one round per value, BERTH_API_CONCURRENCY set to it).
Same-run baseline: the same number of plain Deployments with the same GPU pod shape and no
operator, created -> available, i.e. what the control plane alone costs. Figures only.

    python -m bench.reconcile_latency [--counts 1,100,500] [--api-concurrency 6,32]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch  # type: ignore[import-untyped]

from tests.cluster import launcher
from tests.cluster.simulation import GpuPool, Simulation
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess

REPO_ROOT = Path(__file__).resolve().parents[1]
H100 = "NVIDIA-H100-80GB-HBM3"
TIMEOUT_SECONDS = 600.0


class ReadyWatch:
    """Records, per object name, when it was first seen and when ``is_ready`` first held."""

    def __init__(
        self, list_call: Callable[..., Any], namespace: str, is_ready: Callable[[Any], bool]
    ) -> None:
        self._list_call, self._namespace, self._is_ready = list_call, namespace, is_ready
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for event in watch.Watch().stream(self._list_call, self._namespace, timeout_seconds=5):
                now = time.monotonic()
                obj = event["object"]
                name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                self.seen.setdefault(name, now)
                if name not in self.ready and self._is_ready(obj):
                    self.ready[name] = now

    def wait_all(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while len(self.ready) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()

    def latencies(self) -> list[float]:
        return sorted(self.ready[name] - self.seen[name] for name in self.ready)


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, math.ceil(fraction * len(values)) - 1)]


def _idep(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": f"model-{index}"},
        "spec": {
            "model": {"name": f"model-{index}", "source": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "resources": {"gpu": {"count": 1, "product": H100}},
        },
    }


def _deployment(index: int) -> dict[str, Any]:
    labels = {"app": f"plain-{index}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"plain-{index}"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": H100},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "runtime",
                            "image": "runtime:bench",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def _create_all(cluster: ClusterAccess, namespace: str, items: list[dict[str, Any]]) -> float:
    """One ``kubectl create`` of all items (a List); returns when it started."""
    started = time.monotonic()
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    cluster.kubectl("create", "-f", "-", stdin=document, namespace=namespace, timeout=TIMEOUT_SECONDS)
    return started


def _summary(label: str, watcher: ReadyWatch, count: int, started: float) -> str:
    latencies = watcher.latencies()
    if not latencies:
        return f"{label}: none Ready within {TIMEOUT_SECONDS:.0f} s"
    all_ready = max(watcher.ready.values()) - started
    return (
        f"{label}: {len(latencies)}/{count} Ready, p50 {_percentile(latencies, 0.5):.2f} s, "
        f"p99 {_percentile(latencies, 0.99):.2f} s, all Ready {all_ready:.1f} s after apply"
    )


def _process_figures(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MiB of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return cpu, peak_kib / 1024


def _fresh_namespace(cluster: ClusterAccess, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 60
    while not cluster.kubectl("get", "sa", "default", "--ignore-not-found", "-o", "name", namespace=name):
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {name}: no default service account after 60 s")
        time.sleep(0.2)
    return name


def _delete_namespace(cluster: ClusterAccess, name: str) -> None:
    cluster.kubectl("delete", "namespace", name, timeout=TIMEOUT_SECONDS)


def baseline_round(cluster: ClusterAccess, api: client.ApiClient, count: int) -> None:
    namespace = _fresh_namespace(cluster, "bench-plain")
    apps = client.AppsV1Api(api)
    watcher = ReadyWatch(
        apps.list_namespaced_deployment, namespace, lambda d: (d.status.available_replicas or 0) >= 1
    )
    started = _create_all(cluster, namespace, [_deployment(index) for index in range(count)])
    watcher.wait_all(count)
    print(f"  {_summary(f'baseline, {count} plain Deployments', watcher, count, started)}", flush=True)
    _delete_namespace(cluster, namespace)


def operator_round(
    cluster: ClusterAccess, api: client.ApiClient, count: int, api_concurrency: int, log_dir: Path
) -> None:
    namespace = _fresh_namespace(cluster, "bench-idep")
    operator = OperatorProcess(
        cluster.kubeconfig,
        namespace,
        log_dir / f"operator-{count}-{api_concurrency}.log",
        {"BERTH_LOG_LEVEL": "WARNING", "BERTH_API_CONCURRENCY": str(api_concurrency)},
    )
    operator.start()
    try:
        custom = client.CustomObjectsApi(api)

        def list_ideps(namespace: str, **kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(
                "berth.dev", "v1alpha1", namespace, "inferencedeployments", **kwargs
            )

        watcher = ReadyWatch(
            list_ideps, namespace, lambda obj: (obj.get("status") or {}).get("phase") == "Ready"
        )
        cpu_before, _ = _process_figures(operator.pid)
        started = _create_all(cluster, namespace, [_idep(index) for index in range(count)])
        watcher.wait_all(count)
        cpu_after, peak_mib = _process_figures(operator.pid)
        label = f"berth, {count} InferenceDeployments, API concurrency {api_concurrency}"
        print(f"  {_summary(label, watcher, count, started)}", flush=True)
        print(
            f"  operator: {cpu_after - cpu_before:.1f} CPU s for the round, peak RSS {peak_mib:.0f} MiB",
            flush=True,
        )
        # While the operator runs: its finalizer must be released before the namespace can go.
        cluster.kubectl(
            "delete", "inferencedeployments", "--all", namespace=namespace, timeout=TIMEOUT_SECONDS
        )
    finally:
        operator.stop()
    _delete_namespace(cluster, namespace)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--counts", default="1,100,500", help="comma-separated resource counts (default 1,100,500)"
    )
    parser.add_argument(
        "--api-concurrency",
        default="32",
        help="comma-separated BERTH_API_CONCURRENCY values, one operator round each (default 32)",
    )
    arguments = parser.parse_args()
    counts = [int(part) for part in arguments.counts.split(",")]
    concurrencies = [int(part) for part in arguments.api_concurrency.split(",")]
    gpu_nodes = math.ceil(max(counts) / 8) + 1
    name = f"bench-reconcile-{os.getpid()}"
    running = launcher.up(name, Simulation(gpu_pools=(GpuPool(H100, nodes=gpu_nodes),), cpu_nodes=0))
    try:
        cluster = ClusterAccess(running.kubeconfig, running.kubectl, local=True)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/inferencedeployments.berth.dev")
        api = config.new_client_from_config(config_file=str(running.kubeconfig))
        print(f"cluster: {gpu_nodes} simulated H100 nodes x 8 GPUs, readiness delay 0", flush=True)
        with tempfile.TemporaryDirectory(prefix="berth-bench-") as log_dir:
            for count in counts:
                print(f"{count} at once:", flush=True)
                baseline_round(cluster, api, count)
                for api_concurrency in concurrencies:
                    operator_round(cluster, api, count, api_concurrency, Path(log_dir))
    finally:
        launcher.down(name)


if __name__ == "__main__":
    main()
