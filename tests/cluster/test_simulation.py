"""The simulated nodes and KWOK stages the launcher registers (no cluster needed)."""

from __future__ import annotations

import pytest
import yaml

from tests.cluster.simulation import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GpuPool,
    Simulation,
    kwok_config,
    node_manifests,
)


def test_default_simulation_is_four_h100_nodes_with_eight_gpus_and_one_cpu_node() -> None:
    nodes = node_manifests(Simulation())
    gpu_nodes = [node for node in nodes if GPU_PRODUCT_LABEL in node["metadata"]["labels"]]
    cpu_nodes = [node for node in nodes if GPU_PRODUCT_LABEL not in node["metadata"]["labels"]]
    assert len(gpu_nodes) == 4 and len(cpu_nodes) == 1
    for node in gpu_nodes:
        labels = node["metadata"]["labels"]
        assert labels[GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
        assert labels["nvidia.com/gpu.memory"] == "81559"
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert node["spec"]["taints"] == [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    assert GPU_RESOURCE not in cpu_nodes[0]["status"]["allocatable"]
    assert "taints" not in cpu_nodes[0]["spec"]
    assert len({node["metadata"]["name"] for node in nodes}) == len(nodes)


def test_pools_of_several_products_get_distinct_node_names() -> None:
    simulation = Simulation(gpu_pools=(GpuPool.parse("NVIDIA-L4:2:4"), GpuPool.parse("Custom-GPU:1:2:12345")))
    nodes = {node["metadata"]["name"]: node for node in node_manifests(simulation)}
    assert sorted(nodes) == ["cpu-0", "gpu-custom-0", "gpu-l4-0", "gpu-l4-1"]
    assert nodes["gpu-l4-0"]["status"]["allocatable"][GPU_RESOURCE] == "4"
    assert nodes["gpu-custom-0"]["metadata"]["labels"]["nvidia.com/gpu.memory"] == "12345"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("NVIDIA-L4", "expected PRODUCT:NODES"),
        ("NVIDIA-L4:two", "must be integers"),
        ("NVIDIA-L4:1:0", "gpus_per_node=0"),
        ("NVIDIA-L4:-1", "nodes=-1"),
        ("Unknown-GPU:1", "memory unknown"),
    ],
)
def test_bad_pool_specs_are_refused_with_the_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        GpuPool.parse(text)


def test_negative_ready_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="ready_delay_seconds=-1"):
        Simulation(ready_delay_seconds=-1)


def test_kwok_config_carries_every_stage_and_the_ready_delay() -> None:
    documents = list(yaml.safe_load_all(kwok_config(Simulation(ready_delay_seconds=2.5))))
    stages = {document["metadata"]["name"]: document for document in documents}
    assert set(stages) == {
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-running",
        "pod-ready",
        "pod-crash",
        "pod-delete",
    }
    assert all(document["kind"] == "Stage" for document in documents)
    assert stages["pod-ready"]["spec"]["delay"]["durationMilliseconds"] == 2500
