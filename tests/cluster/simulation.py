"""The nodes of the local control plane: KWOK's simulated GPU and CPU nodes, and local nodes.

Why: berth schedules onto NVIDIA GPU nodes, which no test machine has. KWOK (Kubernetes WithOut
Kubelet) plays the kubelet for Node objects we register: the nodes carry the labels, taint and
``nvidia.com/gpu`` capacity that NVIDIA's device plugin and GPU feature discovery would publish,
so the real scheduler places pods as it would on a GPU cluster. The stages in ``stages/`` move
scheduled pods through Running -> Ready (after a readiness delay that stands in for model loading)
and let a test make a pod crash-loop by annotating it ``kwok.berth.dev/fail``, or every pod of a pod
template by setting the environment variable ``KWOK_BERTH_FAIL`` in one of its containers (an
InferenceDeployment's ``spec.runtime.env`` reaches its pods; annotations of the test's choosing do not).

Local nodes (``local_nodes``) are the other kind: their pods really run, as processes on this host,
under the agent in tests/cluster/local_node (why, and what it stands in for, is in its docstring).
They cost a process per pod, so scale and GPU-capacity tests stay on KWOK's nodes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES_DIR = Path(__file__).resolve().parent / "stages"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
POD_FAIL_ANNOTATION = "kwok.berth.dev/fail"
POD_FAIL_MESSAGE_ANNOTATION = "kwok.berth.dev/fail-message"
POD_FAIL_ENV = "KWOK_BERTH_FAIL"
"""Set in a container of a pod, the pod crash-loops with the variable's value as termination message."""
POD_READY_DELAY_ANNOTATION = "kwok.berth.dev/ready-delay"

# GPU memory in MiB as GPU feature discovery reports it, for products a user is likely to name.
KNOWN_GPU_MEMORY_MIB = {
    "NVIDIA-H100-80GB-HBM3": 81559,
    "NVIDIA-H200": 143771,
    "NVIDIA-A100-SXM4-80GB": 81920,
    "NVIDIA-A100-SXM4-40GB": 40960,
    "NVIDIA-L40S": 46068,
    "NVIDIA-L4": 23034,
    "Tesla-T4": 15360,
}
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
_STAGE_FILES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-running.yaml",
    "pod-ready.yaml",
    "pod-crash.yaml",
    "pod-delete.yaml",
)


@dataclass(frozen=True)
class GpuPool:
    """``nodes`` simulated GPU nodes, each with ``gpus_per_node`` GPUs of one product."""

    product: str = DEFAULT_GPU_PRODUCT
    nodes: int = 4
    gpus_per_node: int = 8
    memory_mib: int | None = None

    def __post_init__(self) -> None:
        if self.nodes < 0:
            raise ValueError(f"GPU pool {self.product}: nodes={self.nodes}; must be >= 0")
        if self.gpus_per_node < 1:
            raise ValueError(f"GPU pool {self.product}: gpus_per_node={self.gpus_per_node}; must be >= 1")
        if self.memory_mib is None and self.product not in KNOWN_GPU_MEMORY_MIB:
            known = ", ".join(sorted(KNOWN_GPU_MEMORY_MIB))
            raise ValueError(
                f"GPU pool {self.product}: memory unknown; give memory_mib or use one of: {known}"
            )

    @property
    def gpu_memory_mib(self) -> int:
        return self.memory_mib if self.memory_mib is not None else KNOWN_GPU_MEMORY_MIB[self.product]

    @classmethod
    def parse(cls, text: str) -> GpuPool:
        """Parses ``PRODUCT:NODES[:GPUS_PER_NODE[:MEMORY_MIB]]``, e.g. ``NVIDIA-L4:2:4``."""
        parts = text.split(":")
        if not 2 <= len(parts) <= 4 or not parts[0]:
            raise ValueError(f"GPU pool {text!r}: expected PRODUCT:NODES[:GPUS_PER_NODE[:MEMORY_MIB]]")
        try:
            numbers = [int(part) for part in parts[1:]]
        except ValueError:
            raise ValueError(
                f"GPU pool {text!r}: NODES, GPUS_PER_NODE and MEMORY_MIB must be integers"
            ) from None
        nodes = numbers[0]
        gpus = numbers[1] if len(numbers) > 1 else 8
        memory = numbers[2] if len(numbers) > 2 else None
        return cls(product=parts[0], nodes=nodes, gpus_per_node=gpus, memory_mib=memory)


@dataclass(frozen=True)
class Simulation:
    """The simulated part of a cluster: node pools and the default pod readiness delay."""

    gpu_pools: tuple[GpuPool, ...] = field(default_factory=lambda: (GpuPool(),))
    cpu_nodes: int = 1
    ready_delay_seconds: float = 0.0
    node_owner: str = "fake"
    """Value of the nodes' kwok.x-k8s.io/node annotation; the KWOK process that owns them selects on it."""
    local_nodes: int = 0
    """Nodes whose pods really run (tests/cluster/local_node); tainted and labelled
    node.berth.dev/runs-pods=true, so only pods that ask for them land there. Default 0."""
    local_node_prefix: str = "local"
    """Local nodes are named ``<prefix>-<n>``; distinct prefixes let agents share a cluster."""
    local_node_backoff_seconds: float = 10.0
    """First crash-loop back-off of local nodes, doubling to 5 min; 10 s as the kubelet. Tests use ~1."""
    local_pod_network: str = "auto"
    """route (a local route for a private /24: EndpointSlices work), loopback, or auto (route, else
    loopback); see tests/cluster/local_node/network.py."""

    def __post_init__(self) -> None:
        if self.cpu_nodes < 0:
            raise ValueError(f"cpu_nodes={self.cpu_nodes}; must be >= 0")
        if self.local_nodes < 0:
            raise ValueError(f"local_nodes={self.local_nodes}; must be >= 0")
        if self.local_node_backoff_seconds <= 0:
            raise ValueError(f"local_node_backoff_seconds={self.local_node_backoff_seconds}; must be > 0")
        if self.local_pod_network not in ("auto", "route", "loopback"):
            raise ValueError(
                f"local_pod_network={self.local_pod_network!r}; expected auto, route or loopback"
            )
        if self.ready_delay_seconds < 0:
            raise ValueError(f"ready_delay_seconds={self.ready_delay_seconds}; must be >= 0")


def _node(
    owner: str, name: str, labels: dict[str, str], allocatable: dict[str, str], taints: list[Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: owner, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": allocatable, "capacity": allocatable},
    }


def _slug(product: str) -> str:
    return product.lower().replace("nvidia-", "").split("-")[0]


def node_manifests(simulation: Simulation) -> list[dict[str, Any]]:
    """Node objects for every pool: GPU nodes named ``gpu-<product>-<n>``, CPU nodes ``cpu-<n>``."""
    nodes = []
    for pool in simulation.gpu_pools:
        for index in range(pool.nodes):
            nodes.append(
                _node(
                    simulation.node_owner,
                    f"gpu-{_slug(pool.product)}-{index}",
                    {
                        GPU_PRODUCT_LABEL: pool.product,
                        GPU_MEMORY_LABEL: str(pool.gpu_memory_mib),
                        GPU_COUNT_LABEL: str(pool.gpus_per_node),
                        "nvidia.com/gpu.present": "true",
                    },
                    {
                        "cpu": "192",
                        "memory": "2Ti",
                        "ephemeral-storage": "8Ti",
                        "pods": "110",
                        GPU_RESOURCE: str(pool.gpus_per_node),
                    },
                    [dict(GPU_TAINT)],
                )
            )
    for index in range(simulation.cpu_nodes):
        nodes.append(
            _node(
                simulation.node_owner,
                f"cpu-{index}",
                {},
                {"cpu": "32", "memory": "128Gi", "ephemeral-storage": "1Ti", "pods": "110"},
                [],
            )
        )
    return nodes


def kwok_config(simulation: Simulation) -> str:
    """KWOK's --config file: our stages, with the default readiness delay filled in."""
    documents: list[dict[str, Any]] = []
    for file_name in _STAGE_FILES:
        stage = yaml.safe_load((STAGES_DIR / file_name).read_text())
        if stage["metadata"]["name"] == "pod-ready":
            stage["spec"]["delay"]["durationMilliseconds"] = int(simulation.ready_delay_seconds * 1000)
        documents.append(stage)
    return yaml.safe_dump_all(documents, sort_keys=False)


def local_node_names(simulation: Simulation) -> list[str]:
    return [f"{simulation.local_node_prefix}-{index}" for index in range(simulation.local_nodes)]


def local_node_argv(simulation: Simulation, kubeconfig: Path, state_dir: Path) -> list[str]:
    """The local-node agent's command line (run from the repository root, so ``tests`` imports)."""
    argv = [sys.executable, "-m", "tests.cluster.local_node", f"--kubeconfig={kubeconfig}"]
    argv += [f"--state-dir={state_dir}", f"--pod-network={simulation.local_pod_network}"]
    argv += [f"--backoff-seconds={simulation.local_node_backoff_seconds:g}"]
    return argv + [f"--node={name}" for name in local_node_names(simulation)]
