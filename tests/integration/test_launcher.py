"""The launcher's shell interface: up prints exports that work, down stops every process by PID.

Why: the demo and people at a terminal rely on ``python -m tests.cluster``; a leaked etcd or API
server would eat the machine and block ports for the next run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.cluster import launcher, processes
from tests.integration.support import REPO_ROOT

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.cluster", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_prints_working_exports_and_down_stops_every_process() -> None:
    name = f"launcher-{uuid.uuid4().hex[:6]}"
    started = _cli("up", "--name", name, "--gpu-pool", "NVIDIA-L4:1:2", "--cpu-nodes", "0")
    try:
        assert started.returncode == 0, started.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in started.stdout.splitlines()
            if "PATH" not in line
        )
        cluster = launcher.find(name)
        assert cluster is not None
        assert exports["KUBECONFIG"] == str(cluster.kubeconfig)
        nodes = subprocess.run(
            [str(cluster.kubectl), "get", "nodes", "-o", "json"],
            env={**os.environ, "KUBECONFIG": exports["KUBECONFIG"]},
            capture_output=True,
            text=True,
            check=True,
        )
        names = [node["metadata"]["name"] for node in json.loads(nodes.stdout)["items"]]
        assert names == ["gpu-l4-0"]
        assert set(cluster.pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        assert all(processes.is_ours(pid, str(cluster.state_dir)) for pid in cluster.pids.values())

        again = _cli("up", "--name", name)
        assert again.returncode == 1
        assert "already up" in again.stderr
    finally:
        stopped = _cli("down", "--name", name)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(processes.is_alive(pid) for pid in cluster.pids.values())
    assert not cluster.state_dir.exists()
    assert launcher.find(name) is None
    assert "was not running" in _cli("down", "--name", name).stderr
