"""The Gateway API's HTTPRoute CRD on the local control plane, from the Go module that publishes it.

Why: spec.serving.httpRoute must be checked against the real HTTPRoute schema (its validation, its
defaults) and a real API server, not a stand-in. The CRDs ship inside the sigs.k8s.io/gateway-api Go
module, which the Go module proxy serves; `go mod download` keeps it in the module cache, so only
the first run fetches it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.support import ClusterAccess, condition, wait_for

GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api@v1.4.1"
HTTP_ROUTE_CRD = "httproutes.gateway.networking.k8s.io"


def http_route_crd_file() -> Path:
    """The standard channel's HTTPRoute CRD of the pinned Gateway API release."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", GATEWAY_API_MODULE],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    module = Path(json.loads(result.stdout)["Dir"])
    return module / "config" / "crd" / "standard" / "gateway.networking.k8s.io_httproutes.yaml"


def install_http_route_crd(cluster: ClusterAccess) -> None:
    """Applies the HTTPRoute CRD and waits until the API server serves it."""
    cluster.kubectl("apply", "--server-side", "-f", str(http_route_crd_file()))
    wait_for(
        lambda: (condition(cluster.get("crd", HTTP_ROUTE_CRD), "Established") or {}).get("status") == "True",
        60,
        f"CRD {HTTP_ROUTE_CRD} Established",
    )
