"""Command lines and kubeconfigs of the control plane's components.

Why: each flag here is a decision about how the local control plane mirrors a real cluster (RBAC,
service-account tokens, which controllers run, client rate limits sized for hundreds of
resources). Kept apart from the launcher's process orchestration so each reads on its own.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cluster.build import Binaries
from tests.cluster.pki import ClusterPki, KeyPair

# The controllers berth relies on, and those a GPU cluster's pods need to come and go.
CONTROLLERS = (
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
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def write_kubeconfig(path: Path, server: str, ca: Path, client: KeyPair, user: str) -> None:
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


def etcd_argv(binaries: Binaries, data_dir: Path, client_url: str, peer_port: int) -> list[str]:
    return [
        str(binaries.tool("etcd")),
        f"--data-dir={data_dir}",
        f"--listen-client-url={client_url}",
        f"--listen-peer-url=http://127.0.0.1:{peer_port}",
        "--unsafe-no-fsync",  # a test cluster: speed over crash safety
    ]


def apiserver_argv(binaries: Binaries, pki: ClusterPki, etcd_url: str, port: int) -> list[str]:
    return [
        str(binaries.tool("kube-apiserver")),
        f"--etcd-servers={etcd_url}",
        *_serving_flags(pki, port),
        "--advertise-address=127.0.0.1",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--service-cluster-ip-range=10.96.0.0/16",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_private_key}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(binaries: Binaries, pki: ClusterPki, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binaries.tool("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        *_serving_flags(pki, port),
        f"--controllers={','.join(CONTROLLERS)}",
        "--use-service-account-credentials=true",  # each controller under its own RBAC identity
        f"--service-account-private-key-file={pki.service_account_private_key}",
        f"--root-ca-file={pki.ca.cert}",
        "--leader-elect=false",
        "--kube-api-qps=200",  # the default 20 would throttle a 500-resource benchmark
        "--kube-api-burst=400",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(binaries: Binaries, pki: ClusterPki, kubeconfig: Path, port: int) -> list[str]:
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


def kwok_argv(
    binaries: Binaries, kubeconfig: Path, config: Path, node_owner: str, server_port: int
) -> list[str]:
    """KWOK managing the nodes annotated ``kwok.x-k8s.io/node=<node_owner>``, with our stages."""
    return [
        str(binaries.tool("kwok")),
        f"--kubeconfig={kubeconfig}",
        f"--config={config}",
        f"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node={node_owner}",
        "--node-lease-duration-seconds=40",
        "--cidr=10.0.0.1/16",
        f"--server-address=127.0.0.1:{server_port}",
    ]
