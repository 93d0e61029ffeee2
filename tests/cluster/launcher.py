"""Brings a local Kubernetes control plane with simulated GPU nodes up and down.

Why: berth's integration tests and demo need a real API server, controller manager and scheduler
(real CRD validation, rollouts, garbage collection, scheduling on ``nvidia.com/gpu``) on machines
without Docker. ``up`` builds the binaries on first use (tests/cluster/build.py), makes
certificates, starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK on
free 127.0.0.1 ports, registers the simulated nodes and returns once nodes are Ready and the
``default`` namespace has its service account. Everything lives in a state folder outside the
work tree; ``down`` stops the processes by PID and removes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tests.cluster import processes
from tests.cluster.build import Binaries, cache_root, ensure_binaries
from tests.cluster.pki import ClusterPki, KeyPair, make_pki
from tests.cluster.simulation import Simulation, kwok_config, node_manifests

_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "endpointslice-controller",
    "endpoints-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "disruption-controller",
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
)
_STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
_START_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class RunningCluster:
    """A started cluster, as recorded in ``<state_dir>/state.json``."""

    name: str
    state_dir: Path
    kubeconfig: Path
    bin_dir: Path
    server: str
    pids: dict[str, int]
    startup_seconds: dict[str, float] = field(default_factory=dict)
    """How long each phase of ``up`` took: binaries, control plane, nodes."""

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl and Kubernetes clients at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig), "BERTH_CLUSTER_BIN": str(self.bin_dir)}

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

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
    apiserver = cluster.pids.get("kube-apiserver")
    if apiserver is None or not processes.is_ours(apiserver, str(state_dir)):
        return None
    return cluster


def _write_kubeconfig(path: Path, server: str, ca: Path, client: KeyPair, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "berth-local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}
        ],
        "contexts": [{"name": "berth-local", "context": {"cluster": "berth-local", "user": user}}],
        "current-context": "berth-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _serving_flags(pki: ClusterPki, port: int) -> list[str]:
    return [
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
    ]


def _apiserver_argv(binaries: Binaries, pki: ClusterPki, etcd_url: str, port: int) -> list[str]:
    return [
        str(binaries.tool("kube-apiserver")),
        f"--etcd-servers={etcd_url}",
        *_serving_flags(pki, port),
        "--advertise-address=127.0.0.1",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_private_key}",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        "--profiling=false",
        "--v=1",
    ]


def _controller_manager_argv(binaries: Binaries, pki: ClusterPki, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binaries.tool("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        *_serving_flags(pki, port),
        f"--controllers={','.join(_CONTROLLERS)}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_private_key}",
        f"--root-ca-file={pki.ca.cert}",
        "--leader-elect=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--profiling=false",
        "--v=1",
    ]


def _scheduler_argv(binaries: Binaries, pki: ClusterPki, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binaries.tool("kube-scheduler")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        *_serving_flags(pki, port),
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kubectl(cluster: RunningCluster, *args: str, stdin: str | None = None, check: bool = True) -> str:
    """Runs the cluster's kubectl against it and returns stdout; raises with stderr on failure."""
    result = subprocess.run(
        [str(cluster.kubectl), f"--kubeconfig={cluster.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, ["kubectl", *args], result.stdout, result.stderr
        )
    return result.stdout


def up(name: str = "berth", simulation: Simulation | None = None) -> RunningCluster:
    """Starts the cluster ``name`` and returns once it can run pods on its simulated nodes."""
    simulation = simulation or Simulation()
    if find(name) is not None:
        raise ClusterExistsError(f"cluster {name!r} is already up; run `python -m tests.cluster down` first")
    started = time.monotonic()
    binaries = ensure_binaries()
    binaries_ready = time.monotonic()
    state_dir = state_dir_for(name)
    down(name)  # leftovers of a cluster that died without `down`: stop what still runs
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    pki = make_pki(state_dir / "pki")
    etcd_url = f"http://127.0.0.1:{processes.free_port()}"
    server = f"https://127.0.0.1:{processes.free_port()}"
    admin_kubeconfig = state_dir / "kubeconfig"
    _write_kubeconfig(admin_kubeconfig, server, pki.ca.cert, pki.admin, "berth-admin")
    controller_manager_kubeconfig = state_dir / "controller-manager.kubeconfig"
    _write_kubeconfig(
        controller_manager_kubeconfig, server, pki.ca.cert, pki.controller_manager, "kube-controller-manager"
    )
    scheduler_kubeconfig = state_dir / "scheduler.kubeconfig"
    _write_kubeconfig(scheduler_kubeconfig, server, pki.ca.cert, pki.scheduler, "kube-scheduler")
    (state_dir / "kwok.yaml").write_text(kwok_config(simulation))

    cluster = RunningCluster(name, state_dir, admin_kubeconfig, binaries.bin_dir, server, {})
    try:
        _start_components(
            cluster, binaries, pki, etcd_url, controller_manager_kubeconfig, scheduler_kubeconfig
        )
        control_plane_ready = time.monotonic()
        kubectl(cluster, "create", "-f", "-", stdin=yaml.safe_dump_all(node_manifests(simulation)))
        kubectl(
            cluster,
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            f"--timeout={_START_TIMEOUT_SECONDS:.0f}s",
        )
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


def _start_components(
    cluster: RunningCluster,
    binaries: Binaries,
    pki: ClusterPki,
    etcd_url: str,
    controller_manager_kubeconfig: Path,
    scheduler_kubeconfig: Path,
) -> None:
    state_dir, log_dir, pids = cluster.state_dir, cluster.log_dir, cluster.pids
    ca_only = processes.tls_context(pki.ca.cert)
    admin = processes.tls_context(pki.ca.cert, pki.admin.cert, pki.admin.key)

    def launch(name: str, argv: list[str]) -> int:
        pids[name] = processes.start(name, argv, log_dir, state_dir)
        cluster.save()  # recorded at once, so `down` can stop a half-started cluster
        return pids[name]

    etcd_argv = [
        str(binaries.tool("etcd")),
        f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-url={etcd_url}",
        f"--listen-peer-url=http://127.0.0.1:{processes.free_port()}",
        "--unsafe-no-fsync",
    ]
    pid = launch("etcd", etcd_argv)
    processes.wait_until(
        lambda: processes.http_ok(f"{etcd_url}/health"),
        _START_TIMEOUT_SECONDS,
        "/health",
        pid,
        log_dir,
        "etcd",
    )
    api_port = int(cluster.server.rsplit(":", 1)[1])
    pid = launch("kube-apiserver", _apiserver_argv(binaries, pki, etcd_url, api_port))
    processes.wait_until(
        lambda: processes.https_ok(f"{cluster.server}/readyz", admin),
        _START_TIMEOUT_SECONDS,
        "/readyz",
        pid,
        log_dir,
        "kube-apiserver",
    )
    for name, argv_of in (
        (
            "kube-controller-manager",
            lambda port: _controller_manager_argv(binaries, pki, controller_manager_kubeconfig, port),
        ),
        ("kube-scheduler", lambda port: _scheduler_argv(binaries, pki, scheduler_kubeconfig, port)),
    ):
        port = processes.free_port()
        pid = launch(name, argv_of(port))
        processes.wait_until(
            lambda port=port: processes.https_ok(f"https://127.0.0.1:{port}/healthz", ca_only),
            _START_TIMEOUT_SECONDS,
            "/healthz",
            pid,
            log_dir,
            name,
        )
    launch(
        "kwok",
        [
            str(binaries.tool("kwok")),
            f"--kubeconfig={cluster.kubeconfig}",
            f"--config={state_dir / 'kwok.yaml'}",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.0.0.1/16",
            f"--server-address=127.0.0.1:{processes.free_port()}",
        ],
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


def _stop_all(cluster: RunningCluster) -> None:
    for name in _STOP_ORDER:
        pid = cluster.pids.get(name)
        if pid is not None:
            processes.stop(pid, str(cluster.state_dir))


def down(name: str = "berth", keep_state: bool = False) -> bool:
    """Stops every process of cluster ``name`` by PID and removes its state; False if none was found."""
    state_dir = state_dir_for(name)
    if not (state_dir / "state.json").is_file():
        return False
    _stop_all(RunningCluster.load(state_dir))
    if not keep_state:
        shutil.rmtree(state_dir)
    return True
