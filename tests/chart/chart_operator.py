"""The operator as the chart would run it, but as a local process: the chart's environment, a token of
its ServiceAccount, and what its log says about peering and refusals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.processes import free_port
from tests.integration.support import ClusterAccess, wait_for

PEERING_RESUME = "Resuming operations"
PEERING_PAUSES = ("Pausing operations in favour of", "Pausing all operators")
# What a refusal by the API server looks like in the operator's log: the Status reason "Forbidden"
# (Kopf's APIForbiddenError, berth's Forbidden), its message "... is forbidden: User ...", and Kopf's
# own warning when it falls back for lack of RBAC. Not a bare "403": log timestamps end in
# milliseconds, and ",403" is one of them a thousandth of the time.
REFUSALS = ("Forbidden", "is forbidden", "Not enough permissions")


def service_account_kubeconfig(
    cluster: ClusterAccess, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token)."""
    token = cluster.kubectl("create", "token", service_account, "--duration=1h", namespace=namespace).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": server}],
                "users": [{"name": service_account, "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "local", "user": service_account}}],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)
    return path


class ChartOperator:
    """`python -m berth_operator` with the environment the chart's Deployment gives it."""

    def __init__(self, deployment: dict[str, Any], kubeconfig: Path, log_path: Path) -> None:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        self.chart_env = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
        # What the chart's POD_ID fieldRef gives a pod; Kopf names the replica in the peering by it.
        self.pod_name = f"berth-{log_path.stem}"
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.health_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **{key: value for key, value in os.environ.items() if key != "KUBECONFIG"},
            **self.chart_env,
            # Only what cannot be the same as in a pod: the kubeconfig and free local ports.
            "KUBECONFIG": str(self.kubeconfig),
            "POD_ID": self.pod_name,
            "BERTH_HEALTH_PORT": str(self.health_port),
            "BERTH_METRICS_PORT": str(free_port()),
            "BERTH_LOG_LEVEL": "DEBUG",
        }
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "berth_operator"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._healthy, 60, "the operator's /healthz")

    def _healthy(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"the operator exited with {self._process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def is_working(self) -> bool:
        """Whether Kopf's last peering decision in the log let this replica work. Every replica starts
        paused and logs only changes: "Resuming operations" when it may work, "Pausing ..." after."""
        log = self.log()
        paused_at = max(log.rfind(marker) for marker in PEERING_PAUSES)
        return log.rfind(PEERING_RESUME) > paused_at


@contextlib.contextmanager
def logs_shown_on_failure(operators: list[ChartOperator]) -> Iterator[None]:
    """Prints the operators' logs when the block fails: they are the only record of why."""
    try:
        yield
    except BaseException:
        for operator in operators:
            print(f"\n----- {operator.log_path.name} -----\n{operator.log()}")
        raise


def assert_no_refusals(operator: ChartOperator) -> None:
    refusals = [line for line in operator.log().splitlines() if any(word in line for word in REFUSALS)]
    assert refusals == [], "the API server refused the operator:\n" + "\n".join(refusals)
