"""Small helpers the integration tests share: kubectl, JSON reads, bounded waits, and a namespace of
its own for each test (the end-to-end tests' too).

Why: every integration test drives a real cluster the way a user does (kubectl) and then waits,
within a bound, for controllers to converge. Keeping those few moves here keeps the tests about
behaviour. A wait that runs out fails with what it last saw, never silently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class KubectlError(RuntimeError):
    """kubectl exited non-zero; ``stderr`` holds the API server's message."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.stderr = stderr


@dataclass(frozen=True)
class ClusterAccess:
    """How tests reach a cluster: its kubeconfig and a kubectl binary."""

    kubeconfig: Path
    kubectl_path: Path
    local: bool
    """True for the local control plane (tests/cluster); False for an existing cluster (kind)."""

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, stdin: str | None = None, namespace: str | None = None, timeout: float = 120
    ) -> str:
        """Runs kubectl and returns stdout; raises KubectlError with the server's message on failure."""
        full = (*(("-n", namespace) if namespace else ()), *args)
        result = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *full],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise KubectlError(full, result.returncode, result.stderr)
        return result.stdout

    def get(self, kind: str, name: str | None = None, namespace: str | None = None, **selector: str) -> Any:
        """``kubectl get -o json`` parsed; with no name, the list's items."""
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if selector:
            args += ["-l", ",".join(f"{key}={value}" for key, value in selector.items())]
        document = json.loads(self.kubectl(*args, namespace=namespace))
        return document if name else document["items"]

    def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> Any:
        output = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found", namespace=namespace)
        return json.loads(output) if output.strip() else None

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> str:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "-f", "-", stdin=text, namespace=namespace)


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""


def wait_for(check: Callable[[], T | None], timeout_seconds: float, what: str, interval: float = 0.5) -> T:
    """Calls ``check`` until it returns something truthy and returns that; fails after the bound.

    ``check`` may raise KubectlError while objects do not exist yet; the last error is reported.
    """
    deadline = time.monotonic() + timeout_seconds
    last_seen: object = None
    while True:
        try:
            result = check()
        except KubectlError as error:
            result, last_seen = None, error
        else:
            last_seen = result
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(
                f"timed out after {timeout_seconds:.0f} s waiting for {what}; last seen: {last_seen!r}"
            )
        time.sleep(interval)


def condition(obj: dict[str, Any] | None, condition_type: str) -> dict[str, Any] | None:
    """The status condition of ``condition_type`` on ``obj``, if any."""
    if not obj:
        return None
    for entry in obj.get("status", {}).get("conditions", []) or []:
        if entry.get("type") == condition_type:
            return dict(entry)
    return None


@contextmanager
def fresh_namespace(cluster: ClusterAccess, test_name: str) -> Iterator[str]:
    """A namespace for one test, named after it (a slug of ``test_name`` and a random suffix), usable
    once its default ServiceAccount exists (pods are refused before); deleted, without waiting, on
    exit."""
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    try:
        wait_for(
            lambda: cluster.kubectl(
                "get", "serviceaccount", "default", "--ignore-not-found", "-o", "name", namespace=name
            ),
            60,
            f"the default service account in {name}",
        )
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
CRD_NAME = "inferencedeployments.berth.dev"


def apply_crds(cluster: ClusterAccess) -> None:
    """Applies berth's CRDs from crds/ and waits until the API server serves them (Established).

    Not `kubectl wait`: on a CRD whose status is not written yet it fails at once ("conditions
    accessor error") instead of waiting, which a busy machine turns into a flaky session.
    """
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
    wait_for(
        lambda: (condition(cluster.get("crd", CRD_NAME), "Established") or {}).get("status") == "True",
        60,
        f"CRD {CRD_NAME} Established",
    )
