"""Fixtures for tests against a real Kubernetes control plane.

Why: berth's operator must be proven against a real API server, controller manager and scheduler.
By default the session starts the local control plane from tests/cluster (built on first use;
simulated H100 and A100 GPU nodes plus a CPU node) and tears it down at the end. With
``BERTH_TEST_CLUSTER=existing`` the tests use ``$KUBECONFIG`` as is, e.g. a kind cluster made from
kind-config.yaml. Each test gets its own namespace; the ``operator`` fixture runs
``python -m berth_operator`` against the cluster, watching only that namespace, and prints the
operator's log when the test fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.cluster import launcher
from tests.cluster.build import ensure_binaries
from tests.cluster.simulation import GpuPool, Simulation
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, apply_crds, fresh_namespace

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
# Two GPU products, so tests can prove pods land only on the product asked for.
TEST_SIMULATION = Simulation(
    gpu_pools=(GpuPool(H100, nodes=4, gpus_per_node=8), GpuPool(A100, nodes=2, gpus_per_node=8)),
    cpu_nodes=1,
    ready_delay_seconds=1.0,
)
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds the control plane before any test runs when integration tests are selected.

    A first build takes minutes: done here it is outside every test's timeout, and its progress
    shows (scripts/test.sh builds even earlier, so this is a no-op there).
    """
    if session.config.option.collectonly or not any(
        item.get_closest_marker("integration") for item in session.items
    ):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        ensure_binaries()


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterAccess]:
    """The cluster under test: the local control plane, or $KUBECONFIG with BERTH_TEST_CLUSTER=existing."""
    binaries = ensure_binaries()  # built already in pytest_collection_finish
    if os.environ.get("BERTH_TEST_CLUSTER", "local") == "existing":
        kubeconfig = Path(os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")))
        kubectl = Path(shutil.which("kubectl") or binaries.kubectl)
        # The same simulated GPU nodes, managed by a local KWOK, so GPU pods have somewhere to go.
        attached = replace(TEST_SIMULATION, cpu_nodes=0, node_owner=f"berth-tests-{os.getpid()}")
        attachment = launcher.attach(f"pytest-attach-{os.getpid()}", kubeconfig, attached)
        try:
            yield ClusterAccess(kubeconfig, kubectl, local=False)
        finally:
            launcher.down(attachment.name)
        return
    running = launcher.up(f"pytest-{os.getpid()}", TEST_SIMULATION)
    try:
        yield ClusterAccess(running.kubeconfig, running.kubectl, local=True)
    finally:
        launcher.down(running.name)


@pytest.fixture(scope="session")
def crds(cluster: ClusterAccess) -> ClusterAccess:
    """The cluster with berth's CRDs applied from crds/ and Established."""
    apply_crds(cluster)
    return cluster


@pytest.fixture
def namespace(cluster: ClusterAccess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    with fresh_namespace(cluster, request.node.name) as name:
        yield name


@pytest.fixture
def operator(
    crds: ClusterAccess, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """berth's operator running against the cluster, watching the test's namespace only."""
    process = OperatorProcess(crds.kubeconfig, namespace, tmp_path / "operator.log")
    process.start()
    yield process
    # Delete the test's resources while the operator still runs, so its finalizer is released and
    # the namespace can go (on a shared cluster such as kind nothing is left behind).
    try:
        if not process.running:
            process.start()
        crds.kubectl("delete", "inferencedeployments", "--all", "--timeout=60s", namespace=namespace)
    finally:
        process.stop()
    if _failed(request):
        print(f"\n----- operator log ({process.log_path}) -----\n{process.log()}")
