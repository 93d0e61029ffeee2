"""The operator as the chart would run it, but as a local process: the chart's environment, a token of
its ServiceAccount, and what its log says about peering and refusals."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess

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


class ChartOperator(OperatorProcess):
    """`python -m berth_operator` with the environment the chart's Deployment gives it; only what
    cannot be the same as in a pod differs: the kubeconfig, free local ports, the pod name (POD_ID,
    a fieldRef in the chart) and DEBUG logging, whose request lines the tests read."""

    def __init__(self, deployment: dict[str, Any], kubeconfig: Path, log_path: Path) -> None:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        chart_env = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
        # What the chart's POD_ID fieldRef gives a pod; Kopf names the replica in the peering by it.
        self.pod_name = f"berth-{log_path.stem}"
        environment = {**chart_env, "POD_ID": self.pod_name, "BERTH_LOG_LEVEL": "DEBUG"}
        super().__init__(kubeconfig, None, log_path, environment)

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
