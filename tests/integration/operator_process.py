"""berth's operator as a real subprocess (``python -m berth_operator``) for integration tests.

Why: a subprocess is exactly what runs in production (settings from BERTH_* variables, Kopf's
own event loop) and it can be killed with SIGKILL mid-reconcile to prove the operator resumes
without duplicating children. Its log goes to a file the ``operator`` fixture prints on failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.cluster.processes import free_port

_READY_TIMEOUT_SECONDS = 60.0


class OperatorProcess:
    """One operator process watching one namespace (None: the namespaces its BERTH_* environment
    names); start/kill/stop may be called repeatedly. ``extra_env`` may set any BERTH_* variable but
    the two ports, which are always free local ones."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str | None,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.extra_env = dict(extra_env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self.health_port = 0

    def start(self) -> None:
        """Starts the operator and returns once its liveness endpoint answers."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the operator is already running")
        self.health_port = free_port()
        env = {
            **os.environ,
            "BERTH_LOG_LEVEL": "DEBUG",
            **self.extra_env,
            "KUBECONFIG": str(self.kubeconfig),
            "BERTH_HEALTH_PORT": str(self.health_port),
            "BERTH_METRICS_PORT": str(free_port()),
        }
        namespace_arguments = ["--namespace", self.namespace] if self.namespace is not None else []
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "berth_operator", *namespace_arguments],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self._process.returncode}:\n{self.log()}")
            if self._healthy():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"the operator's /healthz did not answer in {_READY_TIMEOUT_SECONDS:.0f} s:\n{self.log()}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the operator was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to finish what it was doing."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM and wait for Kopf's graceful exit; SIGKILL if it takes too long."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
