"""How a helper process reaches the API server: server URL, CA and client credentials as files.

Why: the local stand-ins for cluster services (tests/cluster/service_proxy.py, prometheus.py) talk
to the API server themselves -- the proxy with an asyncio HTTP client, Prometheus through its own
Kubernetes discovery, which takes file paths, not a kubeconfig. The local control plane's
kubeconfig names certificate files (components.write_kubeconfig); a kind kubeconfig embeds them
as base64 ``*-data`` fields, which are written out once to files in a folder the caller owns.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeconfigError(ValueError):
    """The kubeconfig does not say how to reach a cluster; the message names what is missing."""


@dataclass(frozen=True)
class ApiServer:
    """One API server and the credentials of one user, every secret as a file path."""

    server: str
    ca_file: Path | None = None
    """The CA that signed the server's certificate; None trusts the system's CAs."""
    cert_file: Path | None = None
    key_file: Path | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _named(entries: list[dict[str, Any]], name: str, what: str, kubeconfig: Path) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return dict(entry.get(what) or {})
    raise KubeconfigError(f"{kubeconfig}: no {what} named {name!r}")


def _file(section: dict[str, Any], key: str, kubeconfig: Path, secrets_dir: Path, stem: str) -> Path | None:
    """``key`` as a path (relative ones are relative to the kubeconfig), or ``key-data`` written out."""
    if section.get(key):
        path = Path(section[key])
        return path if path.is_absolute() else kubeconfig.parent / path
    data = section.get(f"{key}-data")
    if not data:
        return None
    secrets_dir.mkdir(parents=True, exist_ok=True)
    path = secrets_dir / stem
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return path


def from_kubeconfig(kubeconfig: Path, secrets_dir: Path) -> ApiServer:
    """The current context's server and user; embedded certificates go to files in ``secrets_dir``."""
    config = yaml.safe_load(kubeconfig.read_text()) or {}
    context_name = config.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{kubeconfig}: no current-context")
    context = _named(config.get("contexts", []), context_name, "context", kubeconfig)
    cluster = _named(config.get("clusters", []), context.get("cluster", ""), "cluster", kubeconfig)
    user = _named(config.get("users", []), context.get("user", ""), "user", kubeconfig)
    if not cluster.get("server"):
        raise KubeconfigError(f"{kubeconfig}: cluster {context.get('cluster')!r} has no server")
    return ApiServer(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=_file(cluster, "certificate-authority", kubeconfig, secrets_dir, "ca.crt"),
        cert_file=_file(user, "client-certificate", kubeconfig, secrets_dir, "client.crt"),
        key_file=_file(user, "client-key", kubeconfig, secrets_dir, "client.key"),
        token=user.get("token"),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
    )
