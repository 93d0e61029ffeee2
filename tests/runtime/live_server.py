"""A real `python -m berth_runtime serve` process for the live-server tests, on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_LIMIT_SECONDS = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """Starts the server, waits for readiness, and keeps its log for failure messages."""

    def __init__(self, model_dir: Path, log_path: Path, *extra_args: str) -> None:
        self.model_name = model_dir.name
        self.log_path = log_path
        self._model_dir = model_dir
        self._extra_args = extra_args
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "berth_runtime", "serve", "--model", str(self._model_dir),
            "--device", "cpu", "--dtype", "float32", "--host", "127.0.0.1", "--port", str(self.port),
            "--kv-cache-blocks", "512", *self._extra_args,
        ]  # fmt: skip
        self._log = self.log_path.open("w")
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=environment)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
        attempts_left = 3
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log().lower() and attempts_left:
                    attempts_left -= 1  # another process took the free port first: pick another
                    self._log.close()
                    self._start()
                    continue
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {STARTUP_LIMIT_SECONDS} s:\n{self.log()}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
