"""Fixtures of the end-to-end tests: berth whole on one machine.

Why: every part of berth is proven apart elsewhere; here the loop turns for real. A local control
plane with a local node whose pods really run (tests/cluster/local_node), the Service proxy and a
Prometheus that scrapes the runtime pods (tests/cluster/serving.py), berth's CRD and operator (its
autoscaler reading that Prometheus), and the real SmolLM2 model served by berth's runtime in the pods.
The cluster is this session's own (no KWOK nodes), so its CPU goes to the model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import launcher
from tests.cluster.build import ensure_binaries
from tests.cluster.local_node.node import POD_NETWORK_ANNOTATION
from tests.cluster.simulation import Simulation
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, apply_crds, fresh_namespace
from tests.smollm2_reference import Reference, load_reference, smollm2_gguf_file

E2E_SIMULATION = Simulation(gpu_pools=(), cpu_nodes=0, local_nodes=1, local_node_backoff_seconds=1.0)


@pytest.fixture(scope="session")
def local_bed() -> Iterator[launcher.RunningCluster]:
    """The session's cluster whose pods really run, with the Service proxy and Prometheus."""
    ensure_binaries()
    running = launcher.up(f"e2e-{uuid.uuid4().hex[:6]}", E2E_SIMULATION)
    try:
        yield running
    finally:
        launcher.down(running.name)


@pytest.fixture(scope="session")
def bed(local_bed: launcher.RunningCluster) -> ClusterAccess:
    """kubectl access to the local bed, with berth's CRD applied and Established."""
    access = ClusterAccess(local_bed.kubeconfig, local_bed.kubectl, local=True)
    for node in access.get("nodes"):
        network = node["metadata"].get("annotations", {}).get(POD_NETWORK_ANNOTATION, "")
        if "local route" not in network:
            pytest.fail(
                f"local node {node['metadata']['name']} has pod network {network!r}: its pods' loopback "
                "addresses cannot be EndpointSlice endpoints, so no Service would answer. The local bed "
                "needs CAP_NET_ADMIN (run as root) to route a private /24 to this host."
            )
    apply_crds(access)
    return access


@pytest.fixture
def bed_namespace(bed: ClusterAccess, request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_namespace(bed, request.node.name) as name:
        yield name


@pytest.fixture
def bed_operator(
    local_bed: launcher.RunningCluster, bed: ClusterAccess, bed_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """berth's operator on the local bed, its autoscaler's default Prometheus the bed's."""
    environment = {"BERTH_PROMETHEUS_URL": local_bed.prometheus_url} if local_bed.prometheus_url else {}
    process = OperatorProcess(bed.kubeconfig, bed_namespace, tmp_path / "operator.log", environment)
    process.start()
    yield process
    try:
        bed.kubectl("delete", "inferencedeployments", "--all", "--timeout=120s", namespace=bed_namespace)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def smollm2_reference() -> Reference:
    """transformers reading the same GGUF file, in float32: the reference for greedy answers."""
    return load_reference(smollm2_gguf_file())


@pytest.fixture
def bed_api(bed: ClusterAccess) -> object:
    """A Kubernetes API client for the local bed (the `kubernetes` package): for reads a test repeats
    every fraction of a second, where a kubectl process per read would take CPU from the model; wrap it
    in the API group's class (`kubernetes.client.CoreV1Api(bed_api)`)."""
    from kubernetes import config  # type: ignore[import-untyped]

    return config.new_client_from_config(config_file=str(bed.kubeconfig))
