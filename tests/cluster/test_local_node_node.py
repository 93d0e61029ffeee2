"""Local nodes as the cluster sees them: Node objects, pod addresses, and how the launcher asks for them."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from tests.cluster.local_node.network import LOOPBACK_POOL, ROUTED_POOL, AddressPool, PodSubnet, _slots
from tests.cluster.local_node.node import RUNS_PODS_LABEL, allocatable, host_capacity, node_manifest
from tests.cluster.simulation import KWOK_NODE_ANNOTATION, Simulation, local_node_argv, local_node_names


def test_a_local_node_is_a_tainted_cpu_node_that_kwok_ignores(tmp_path: Path) -> None:
    capacity = host_capacity(tmp_path)
    node = node_manifest(
        "local-0", "10.213.4.1", capacity, tmp_path / "pods", "10.213.4.0/24 (local route)", "T"
    )
    metadata, status = node["metadata"], node["status"]
    assert KWOK_NODE_ANNOTATION not in metadata["annotations"]
    assert metadata["labels"][RUNS_PODS_LABEL] == "true"
    assert node["spec"]["taints"] == [{"key": RUNS_PODS_LABEL, "value": "true", "effect": "NoSchedule"}]
    assert not any("nvidia" in key for key in status["capacity"])
    assert int(status["capacity"]["cpu"]) >= 1 and status["capacity"]["pods"] == "110"
    assert status["addresses"][0] == {"type": "InternalIP", "address": "10.213.4.1"}
    ready = next(condition for condition in status["conditions"] if condition["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")


def test_allocatable_keeps_the_kubelets_eviction_reserves() -> None:
    capacity = {"cpu": "8", "memory": "1048576Ki", "ephemeral-storage": "1000Ki", "pods": "110"}
    assert allocatable(capacity) == {
        "cpu": "8",
        "memory": "946176Ki",
        "ephemeral-storage": "900Ki",
        "pods": "110",
    }
    assert host_capacity(Path("/"), cpu="64", memory="256Gi")["memory"] == "256Gi"


def test_pods_get_distinct_addresses_after_the_nodes_and_freed_ones_are_not_reused_at_once() -> None:
    subnet = PodSubnet(ipaddress.IPv4Network("127.10.200.0/24"), routed=False)
    pool = AddressPool(subnet, reserved=2)
    assert [pool.node_address(0), pool.node_address(1)] == ["127.10.200.1", "127.10.200.2"]
    first, second = pool.allocate(), pool.allocate()
    assert (first, second) == ("127.10.200.3", "127.10.200.4")
    pool.release(first)
    assert pool.allocate() == "127.10.200.5"


def test_the_pool_runs_out_loudly() -> None:
    pool = AddressPool(PodSubnet(ipaddress.IPv4Network("127.10.201.0/30"), routed=False), reserved=1)
    assert pool.allocate() == "127.10.201.2"
    with pytest.raises(RuntimeError, match="no free pod address"):
        pool.allocate()


def test_each_state_folder_starts_from_its_own_subnet_and_visits_every_one() -> None:
    first = [next(_slots(ROUTED_POOL, f"/state/{name}")) for name in ("a", "b", "c", "d")]
    assert len(set(first)) > 1
    every = list(_slots(ROUTED_POOL, "/state/a"))
    assert len(every) == len(set(every)) == 256
    assert all(subnet.subnet_of(ROUTED_POOL) for subnet in every)
    assert not ROUTED_POOL.overlaps(ipaddress.IPv4Network("10.96.0.0/16"))  # the Service range
    assert LOOPBACK_POOL.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))


def test_the_simulation_asks_for_local_nodes_by_name_and_back_off() -> None:
    simulation = Simulation(
        gpu_pools=(), cpu_nodes=0, local_nodes=2, local_node_prefix="lt", local_node_backoff_seconds=1
    )
    assert local_node_names(simulation) == ["lt-0", "lt-1"]
    argv = local_node_argv(simulation, Path("/k"), Path("/s/local-node"))
    assert argv[:3] == [sys.executable, "-m", "tests.cluster.local_node"]
    assert {
        "--kubeconfig=/k",
        "--state-dir=/s/local-node",
        "--backoff-seconds=1",
        "--node=lt-0",
        "--node=lt-1",
    } <= set(argv)
    assert local_node_names(Simulation()) == []
    with pytest.raises(ValueError, match="local_nodes=-1"):
        Simulation(local_nodes=-1)
    with pytest.raises(ValueError, match="local_pod_network='bridge'"):
        Simulation(local_pod_network="bridge")
