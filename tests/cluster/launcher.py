"""Brings a local Kubernetes control plane with simulated GPU nodes up and down.

Why: berth's integration tests and demo need a real API server, controller manager and scheduler
(real CRD validation, rollouts, garbage collection, scheduling on ``nvidia.com/gpu``) on machines
without Docker. ``up`` builds the binaries on first use (tests/cluster/build.py), makes
certificates, starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK on
free 127.0.0.1 ports, registers the simulated nodes, starts the local-node agent when the
Simulation asks for nodes whose pods really run, and returns once nodes are Ready and the
``default`` namespace has its service account. ``attach`` adds only KWOK, the simulated nodes and
the local nodes to an existing cluster (kind). Everything lives in a state folder outside the work
tree; ``down`` stops the processes by PID (the local-node agent first, then any container process
it left behind), removes attached nodes, and removes the folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from tests.cluster import components, processes
from tests.cluster.build import Binaries, cache_root, ensure_binaries
from tests.cluster.local_node.network import tear_down_subnet
from tests.cluster.local_node.process import stop_leftovers
from tests.cluster.pki import ClusterPki, make_pki
from tests.cluster.serving import ServingState, start_serving, stop_serving
from tests.cluster.simulation import (
    Simulation,
    kwok_config,
    local_node_argv,
    local_node_names,
    node_manifests,
)

LOCAL_NODE = "local-node"
_STOP_ORDER = (LOCAL_NODE, "kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
_START_TIMEOUT_SECONDS = 120.0
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningCluster:
    """A started cluster (or an attachment to one), as recorded in ``<state_dir>/state.json``."""

    name: str
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    server: str
    pids: dict[str, int]
    startup_seconds: dict[str, float] = field(default_factory=dict)
    """How long each phase of ``up`` took: binaries, control plane, nodes."""
    attached_nodes: list[str] = field(default_factory=list)
    """Simulated nodes added to a cluster we did not start; ``down`` deletes them."""
    prometheus_url: str = ""
    """The Prometheus scraping the runtime pods of local nodes ("" when none runs)."""

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl, Kubernetes clients and berth's operator (its
        default Prometheus) at this cluster."""
        env = {"KUBECONFIG": str(self.kubeconfig), "BERTH_CLUSTER_BIN": str(self.bin_dir)}
        if self.prometheus_url:
            env["BERTH_PROMETHEUS_URL"] = self.prometheus_url
        return env

    @property
    def serving(self) -> ServingState:
        """The Service proxy's and Prometheus' state (services.json: each Service's local address)."""
        return ServingState(self.state_dir)

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def local_node_dir(self) -> Path:
        """The local-node agent's state: pods' volumes and logs (``pods/<ns>_<pod>_<uid>/logs``)."""
        return self.state_dir / LOCAL_NODE

    def save(self) -> None:
        record = {
            key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()
        }
        (self.state_dir / "state.json").write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> RunningCluster:
        record = json.loads((state_dir / "state.json").read_text())
        return cls(
            name=record["name"],
            state_dir=Path(record["state_dir"]),
            kubeconfig=Path(record["kubeconfig"]),
            bin_dir=Path(record["bin_dir"]),
            server=record["server"],
            pids={name: int(pid) for name, pid in record["pids"].items()},
            startup_seconds=dict(record.get("startup_seconds", {})),
            attached_nodes=list(record.get("attached_nodes", [])),
            prometheus_url=str(record.get("prometheus_url", "")),
        )


class ClusterExistsError(RuntimeError):
    """``up`` was asked for a cluster name that is already running."""


def state_dir_for(name: str) -> Path:
    return cache_root() / "clusters" / name


def find(name: str) -> RunningCluster | None:
    """The running cluster called ``name``, or None when it is not up."""
    state_dir = state_dir_for(name)
    if not (state_dir / "state.json").is_file():
        return None
    cluster = RunningCluster.load(state_dir)
    anchor = cluster.pids.get("kube-apiserver", cluster.pids.get("kwok", cluster.pids.get(LOCAL_NODE)))
    if anchor is None or not processes.is_ours(anchor, str(state_dir)):
        return None
    return cluster


def kubectl(cluster: RunningCluster, *args: str, stdin: str | None = None) -> str:
    """Runs the cluster's kubectl against it and returns stdout; raises StartError with stderr."""
    result = subprocess.run(
        [str(cluster.kubectl), f"--kubeconfig={cluster.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        raise processes.StartError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _fresh_state_dir(name: str) -> Path:
    if find(name) is not None:
        raise ClusterExistsError(f"cluster {name!r} is already up; run `python -m tests.cluster down` first")
    down(name)  # leftovers of a cluster that died without `down`: stop what still runs
    state_dir = state_dir_for(name)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    return state_dir


def _launcher(cluster: RunningCluster, cwd: Path | None = None) -> processes.Launch:
    def launch(name: str, argv: list[str]) -> int:
        cluster.pids[name] = processes.start(name, argv, cluster.log_dir, cwd or cluster.state_dir)
        cluster.save()  # recorded at once, so `down` can stop a half-started cluster
        return cluster.pids[name]

    return launch


def _register_nodes(cluster: RunningCluster, simulation: Simulation) -> list[str]:
    nodes = node_manifests(simulation)
    if not nodes:  # a cluster of local nodes only
        return []
    kubectl(cluster, "create", "-f", "-", stdin=yaml.safe_dump_all(nodes))
    names = [node["metadata"]["name"] for node in nodes]
    if names:
        kubectl(
            cluster, "wait", "--for=condition=Ready", *(f"node/{name}" for name in names), "--timeout=120s"
        )
    return names


def _start_local_nodes(cluster: RunningCluster, simulation: Simulation) -> list[str]:
    """Starts the local-node agent (from the repository root, so ``tests`` imports) and waits
    until it has registered its nodes and they are Ready."""
    names = local_node_names(simulation)
    if not names:
        return []
    argv = local_node_argv(simulation, cluster.kubeconfig, cluster.local_node_dir)
    pid = _launcher(cluster, cwd=_REPO_ROOT)(LOCAL_NODE, argv)
    processes.wait_until(
        lambda: (cluster.local_node_dir / "registered").is_file(),
        _START_TIMEOUT_SECONDS,
        "its nodes registered",
        pid,
        cluster.log_dir,
        LOCAL_NODE,
    )
    kubectl(cluster, "wait", "--for=condition=Ready", *(f"node/{name}" for name in names), "--timeout=60s")
    return names


def up(name: str = "berth", simulation: Simulation | None = None) -> RunningCluster:
    """Starts the cluster ``name`` and returns once it can run pods on its simulated nodes."""
    simulation = simulation or Simulation()
    started = time.monotonic()
    binaries = ensure_binaries()
    binaries_ready = time.monotonic()
    state_dir = _fresh_state_dir(name)
    pki = make_pki(state_dir / "pki")
    server = f"https://127.0.0.1:{processes.free_port()}"
    admin_kubeconfig = state_dir / "kubeconfig"
    components.write_kubeconfig(admin_kubeconfig, server, pki.ca.cert, pki.admin, "berth-admin")
    (state_dir / "kwok.yaml").write_text(kwok_config(simulation))

    cluster = RunningCluster(name, state_dir, admin_kubeconfig, binaries.bin_dir, server, {})
    try:
        _start_control_plane(cluster, binaries, pki)
        control_plane_ready = time.monotonic()
        _launcher(cluster)(
            "kwok",
            components.kwok_argv(
                binaries,
                admin_kubeconfig,
                state_dir / "kwok.yaml",
                simulation.node_owner,
                processes.free_port(),
            ),
        )
        _register_nodes(cluster, simulation)
        if _start_local_nodes(cluster, simulation):
            pids, prometheus_url = start_serving(admin_kubeconfig, cluster.serving, cluster.log_dir)
            cluster.pids.update(pids)
            cluster = replace(cluster, prometheus_url=prometheus_url)
        _wait_for_default_service_account(cluster)
    except BaseException:
        _stop_all(cluster)
        raise
    cluster.startup_seconds.update(
        binaries=binaries_ready - started,
        control_plane=control_plane_ready - binaries_ready,
        nodes=time.monotonic() - control_plane_ready,
    )
    cluster.save()
    return cluster


def attach(name: str, kubeconfig: Path, simulation: Simulation) -> RunningCluster:
    """Adds KWOK and simulated nodes (if the Simulation has any) and local nodes to an existing
    cluster (e.g. kind); ``down(name)`` removes them."""
    binaries = ensure_binaries()
    state_dir = _fresh_state_dir(name)
    cluster = RunningCluster(name, state_dir, kubeconfig, binaries.bin_dir, "", {})
    try:
        if node_manifests(simulation):
            (state_dir / "kwok.yaml").write_text(kwok_config(simulation))
            _launcher(cluster)(
                "kwok",
                components.kwok_argv(
                    binaries,
                    kubeconfig,
                    state_dir / "kwok.yaml",
                    simulation.node_owner,
                    processes.free_port(),
                ),
            )
            cluster.attached_nodes.extend(node["metadata"]["name"] for node in node_manifests(simulation))
            cluster.save()
            _register_nodes(cluster, simulation)
        cluster.attached_nodes.extend(local_node_names(simulation))
        cluster.save()
        _start_local_nodes(cluster, simulation)
    except BaseException:
        _detach_nodes(cluster)
        _stop_all(cluster)
        raise
    return cluster


def _start_control_plane(cluster: RunningCluster, binaries: Binaries, pki: ClusterPki) -> None:
    state_dir, log_dir = cluster.state_dir, cluster.log_dir
    launch = _launcher(cluster)
    ca_only = processes.tls_context(pki.ca.cert)
    admin = processes.tls_context(pki.ca.cert, pki.admin.cert, pki.admin.key)

    etcd_url = f"http://127.0.0.1:{processes.free_port()}"
    pid = launch("etcd", components.etcd_argv(binaries, state_dir / "etcd", etcd_url, processes.free_port()))
    processes.wait_until(
        lambda: processes.http_ok(f"{etcd_url}/health"),
        _START_TIMEOUT_SECONDS,
        "/health",
        pid,
        log_dir,
        "etcd",
    )
    api_port = int(cluster.server.rsplit(":", 1)[1])
    pid = launch("kube-apiserver", components.apiserver_argv(binaries, pki, etcd_url, api_port))
    processes.wait_until(
        lambda: processes.https_ok(f"{cluster.server}/readyz", admin),
        _START_TIMEOUT_SECONDS,
        "/readyz",
        pid,
        log_dir,
        "kube-apiserver",
    )
    for name, make_argv, client in (
        ("kube-controller-manager", components.controller_manager_argv, pki.controller_manager),
        ("kube-scheduler", components.scheduler_argv, pki.scheduler),
    ):
        kubeconfig = state_dir / f"{name}.kubeconfig"
        components.write_kubeconfig(kubeconfig, cluster.server, pki.ca.cert, client, name)
        port = processes.free_port()
        pid = launch(name, make_argv(binaries, pki, kubeconfig, port))
        processes.wait_until(
            lambda port=port: processes.https_ok(f"https://127.0.0.1:{port}/healthz", ca_only),
            _START_TIMEOUT_SECONDS,
            "/healthz",
            pid,
            log_dir,
            name,
        )


def _wait_for_default_service_account(cluster: RunningCluster) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if kubectl(
            cluster, "get", "serviceaccount", "default", "-n", "default", "--ignore-not-found", "-o", "name"
        ):
            return
        time.sleep(0.3)
    raise processes.StartError(
        "the controller manager did not create the default service account; its log ends:\n"
        + processes.log_tail(cluster.log_dir, "kube-controller-manager")
    )


def _detach_nodes(cluster: RunningCluster) -> None:
    if not cluster.attached_nodes:
        return
    try:
        kubectl(cluster, "delete", "node", "--ignore-not-found", "--wait=false", *cluster.attached_nodes)
    except processes.StartError as error:  # the cluster is gone or unreachable: nothing left to clean
        print(f"warning: could not remove simulated nodes: {error}", file=sys.stderr)


def _stop_local_nodes(cluster: RunningCluster) -> None:
    """Stops the agent (it ends its containers), then whatever container it left running (if it was
    killed) and its pod route."""
    pid = cluster.pids.get(LOCAL_NODE)
    if pid is not None:
        processes.stop(pid, str(cluster.state_dir))
    stop_leftovers(cluster.local_node_dir)
    tear_down_subnet(cluster.local_node_dir)


def _stop_all(cluster: RunningCluster) -> None:
    stop_serving(cluster.pids, cluster.serving)
    _stop_local_nodes(cluster)
    for name in _STOP_ORDER[1:]:
        pid = cluster.pids.get(name)
        if pid is not None:
            processes.stop(pid, str(cluster.state_dir))


def down(name: str = "berth", keep_state: bool = False) -> bool:
    """Stops every process of cluster ``name`` by PID and removes its state; False if none was found."""
    state_dir = state_dir_for(name)
    if not (state_dir / "state.json").is_file():
        return False
    cluster = RunningCluster.load(state_dir)
    try:
        _stop_local_nodes(cluster)  # before its nodes go, so it never sees them deleted under it
        _detach_nodes(cluster)
    finally:
        _stop_all(cluster)
        if not keep_state:
            shutil.rmtree(state_dir)
    return True
