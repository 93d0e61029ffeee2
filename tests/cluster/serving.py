"""What makes a local cluster's pods reachable and measured once they really run: the Service proxy
(the stand-in for kube-proxy) and a Prometheus that discovers and scrapes the runtime pods.

Why a module of its own: ``launcher.up`` starts both exactly when the cluster has local nodes (KWOK's
pods serve nothing, so neither would have anything to do), and ``down`` stops them by PID; keeping
the two start/stop pairs and where their state lives here keeps the launcher about the control plane.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import processes
from tests.cluster.prometheus import start_prometheus, stop_prometheus
from tests.cluster.service_proxy import SERVICES_FILE, start_service_proxy

SERVICE_PROXY = "service-proxy"
PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class ServingState:
    """Where the two stand-ins keep their state inside a cluster's state folder."""

    state_dir: Path

    @property
    def proxy_dir(self) -> Path:
        return self.state_dir / SERVICE_PROXY

    @property
    def prometheus_dir(self) -> Path:
        return self.state_dir / PROMETHEUS

    @property
    def services_file(self) -> Path:
        return self.proxy_dir / SERVICES_FILE

    def service_addresses(self) -> dict[str, dict[str, str]]:
        """``{"namespace/service": {"http": "127.0.0.1:PORT", ...}}`` as the proxy last wrote it."""
        if not self.services_file.is_file():
            return {}
        addresses: dict[str, dict[str, str]] = json.loads(self.services_file.read_text())
        return addresses


def start_serving(kubeconfig: Path, state: ServingState, log_dir: Path) -> tuple[dict[str, int], str]:
    """Starts the proxy, then Prometheus if Debian's package is installed; returns their PIDs and
    Prometheus' URL ("" without it: the cluster still serves, the autoscaler then reports
    MetricsUnavailable)."""
    pids = {SERVICE_PROXY: start_service_proxy(kubeconfig, state.proxy_dir, log_dir / f"{SERVICE_PROXY}.log")}
    if shutil.which("prometheus") is None:
        return pids, ""
    pid, url = start_prometheus(kubeconfig, state.prometheus_dir)
    pids[PROMETHEUS] = pid
    return pids, url


def stop_serving(pids: dict[str, int], state: ServingState) -> None:
    """Stops whichever of the two runs (by the PIDs recorded at start)."""
    if PROMETHEUS in pids:
        stop_prometheus(pids[PROMETHEUS], state.prometheus_dir)
    if SERVICE_PROXY in pids:
        processes.stop(pids[SERVICE_PROXY], str(state.proxy_dir.resolve()))
