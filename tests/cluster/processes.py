"""Starting, health-checking and stopping the control plane's processes, by PID.

Why: the launcher's processes must outlive the shell command that started them (``up`` returns
while the cluster keeps running) and ``down`` must later stop exactly those processes and nothing
else. Each process runs in its own session with its output in a log file; a PID is only signalled
after checking that its command line still names the cluster's state folder, so a recycled PID is
never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

Launch = Callable[[str, list[str]], int]
"""Starts one named component from its argv and returns its PID."""


class StartError(RuntimeError):
    """A component did not start or did not become healthy; the message carries its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(name: str, argv: list[str], log_dir: Path, cwd: Path) -> int:
    """Starts one component detached from our session, output to ``<log_dir>/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def log_tail(log_dir: Path, name: str, lines: int = 40) -> str:
    path = log_dir / f"{name}.log"
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    _reap(pid)
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def is_ours(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker`` (the state folder)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return is_alive(pid) and marker in cmdline


def stop(pid: int, marker: str, grace_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_seconds``; does nothing unless the PID is ours."""
    if not is_ours(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while is_alive(pid):
        time.sleep(0.05)


def tls_context(
    ca_file: Path, client_cert: Path | None = None, client_key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if client_cert is not None and client_key is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


def http_ok(url: str) -> bool:
    """True when a plain-HTTP GET of ``url`` answers 200 (etcd's /health)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def wait_until(
    condition: Callable[[], bool], timeout_seconds: float, what: str, pid: int, log_dir: Path, name: str
) -> None:
    """Polls ``condition`` until true; fails early, with the log's tail, if the process died."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if not is_alive(pid):
            raise StartError(
                f"{name} exited while waiting for {what}; its log ends:\n{log_tail(log_dir, name)}"
            )
        time.sleep(0.2)
    raise StartError(
        f"{name}: {what} not reached in {timeout_seconds:.0f} s; its log ends:\n{log_tail(log_dir, name)}"
    )
