"""The README's quickstart, run as written on the local control plane.

Why: a quickstart that was never run is a guess. The commands are read from the README's Quickstart
block, not copied here, so the two cannot drift: `helm install` with both image values, `kubectl
rollout status`, `kubectl apply -f examples/quickstart.yaml` and `kubectl wait` run verbatim (helm and
kubectl on PATH, KUBECONFIG pointing at a control plane of this test's own). The operator's pod sits
on a simulated node that pulls no image, so the operator runs beside it as a process with the
release's environment and ServiceAccount (tests/chart/chart_operator.py) -- which is what proves that
operator.runtimeImage reaches the runtime pods, the gap that left them in ImagePullBackOff. The
commands that cannot run here are listed in NOT_RUN_HERE with where they are exercised instead; a
README command in neither list fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import launcher
from tests.cluster.simulation import DEFAULT_GPU_PRODUCT, GpuPool, Simulation
from tests.integration.support import ClusterAccess

from .chart_operator import (
    ChartOperator,
    assert_no_refusals,
    logs_shown_on_failure,
    service_account_kubeconfig,
)
from .conftest import REPO_ROOT, Chart

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
# Commands run as written, by how they start.
RUN_HERE = (
    "REGISTRY=",
    "helm install ",
    "kubectl -n berth-system rollout status ",
    "kubectl apply ",
    "kubectl wait ",
)
# Commands that cannot run on the local control plane, and what exercises them instead.
NOT_RUN_HERE = {
    "scripts/build-images.sh ": "tests/images builds the operator image with it (the runtime's: on demand)",
    "skopeo copy oci-archive:": "no registry here; tests/images copies the archive to an OCI layout",
    "kubectl port-forward ": "the local bed's nodes have no kubelet API (tests/cluster/local_node)",
    "curl ": "the same request is what scripts/build-images.sh runtime --smoke sends to the runtime image",
}


def quickstart_commands() -> list[str]:
    """The Quickstart block's commands, continuation lines joined, comments dropped."""
    text = README.read_text()
    block = re.search(r"### Quickstart.*?```bash\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no ```bash block under a '### Quickstart' heading"
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def quickstart_cluster() -> Iterator[ClusterAccess]:
    running = launcher.up(
        f"quickstart-{os.getpid()}",
        Simulation(
            gpu_pools=(GpuPool(DEFAULT_GPU_PRODUCT, nodes=1, gpus_per_node=8),),
            cpu_nodes=1,
            ready_delay_seconds=1.0,
        ),
    )
    try:
        yield ClusterAccess(running.kubeconfig, running.kubectl, local=True)
    finally:
        launcher.down(running.name)


def test_every_quickstart_command_is_run_here_or_elsewhere() -> None:
    commands = quickstart_commands()
    unaccounted = [c for c in commands if not c.startswith((*RUN_HERE, *NOT_RUN_HERE))]
    assert unaccounted == [], f"README quickstart commands no test runs: {unaccounted}"
    for start in (*RUN_HERE, *NOT_RUN_HERE):
        assert any(c.startswith(start) for c in commands), f"no quickstart command starts with {start!r}"


def test_the_quickstart_installs_both_images_and_its_model_becomes_ready(
    chart: Chart, quickstart_cluster: ClusterAccess, tmp_path: Path
) -> None:
    cluster = quickstart_cluster
    environment = {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(Path(chart.helm).parent), str(cluster.kubectl_path.parent), os.environ["PATH"]]
        ),
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    shell_state = ""  # variable assignments, carried into every later command
    operator: ChartOperator | None = None
    outputs: dict[str, str] = {}
    try:
        for command in quickstart_commands():
            if command.startswith(tuple(NOT_RUN_HERE)):
                continue
            if command.startswith("REGISTRY="):
                shell_state += command + "\n"
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", shell_state + command],
                env=environment,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"{command}\nexited {result.returncode}:\n{result.stderr}"
            outputs[command.split(" ")[1]] = result.stdout
            if command.startswith("helm install "):
                operator = _start_chart_operator(cluster, tmp_path)
        registry = shell_state.split("=", 1)[1].strip()
        operator_image, runtime_image = f"{registry}/berth-operator:0.1.0", f"{registry}/berth-runtime:0.1.0"
        assert f"Runtime image:  {runtime_image}\n" in outputs["install"]
        (container,) = cluster.get("deployment", "berth", namespace="berth-system")["spec"]["template"][
            "spec"
        ]["containers"]
        assert container["image"] == operator_image
        pods = cluster.get("pods", namespace="default", **{"app.kubernetes.io/instance": "smollm2"})
        assert pods, "the quickstart's InferenceDeployment has no runtime pods"
        for pod in pods:
            containers = pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
            assert {c["image"] for c in containers} == {runtime_image}
        assert "condition met" in outputs["wait"]
        cluster.kubectl("delete", "inferencedeployment", "smollm2", "--timeout=60s", namespace="default")
    finally:
        if operator is not None:
            operator.stop()
    assert operator is not None
    assert_no_refusals(operator)


def _start_chart_operator(cluster: ClusterAccess, tmp_path: Path) -> ChartOperator:
    """The release's operator as a process: its Deployment's environment, its ServiceAccount's token."""
    (deployment,) = [
        item
        for item in cluster.get("deployments", namespace="berth-system")
        if item["metadata"]["name"] == "berth"
    ]
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = service_account_kubeconfig(
        cluster, "berth-system", service_account, tmp_path / "sa.kubeconfig"
    )
    operator = ChartOperator(deployment, kubeconfig, tmp_path / "operator.log")
    with logs_shown_on_failure([operator]):
        operator.start()
    return operator
