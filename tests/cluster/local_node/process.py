"""Container processes: started in their own session with output to a log file, signalled as a group.

Why: a container is a process tree the runtime can signal and kill as a whole. Here each container
is a host process started with ``start_new_session``, so its PID is also its process-group ID and
SIGTERM/SIGKILL reach every process it started (workers, children). When the main process exits,
what is left of its group is killed, as a runtime tears down a container whose init process died.
stdout and stderr go to ``<pod>/logs/<container>/<restartCount>.log`` (the kubelet's
/var/log/pods layout); the last lines of that file become the termination message of a container
that exits non-zero, as ``terminationMessagePolicy: FallbackToLogsOnError`` would (there is no
container filesystem to hold /dev/termination-log, so the log is used whatever the policy says).

Every container PID is also appended, with its kernel start time, to ``<state>/container-pids``:
if the agent itself is killed, ``down`` stops what it left running, and a recycled PID (different
start time) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.local_node.records import timestamp

PIDS_FILE = "container-pids"
TERMINATION_MESSAGE_LINES = 80
TERMINATION_MESSAGE_BYTES = 2048
_pids_lock = threading.Lock()


class StartFailure(Exception):
    """The process could not be started (no such executable, bad working directory)."""


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class ContainerProcess:
    """One run of a container."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: str
    started_monotonic: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def container_id(self) -> str:
        return f"berth-local://{self.pid}"

    def signal(self, signum: int) -> None:
        """Signals the whole process group (nothing if it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def wait(self) -> int:
        """Blocks until the process exits; kills what is left of its group; returns the exit code."""
        returncode = self.popen.wait()
        self.signal(signal.SIGKILL)
        return returncode


def exit_status(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) as a container runtime reports them: a signal N is exit code 128+N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def start_process(
    argv: list[str], env: Mapping[str, str], cwd: Path, log_path: Path, state_dir: Path
) -> ContainerProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    started_at = timestamp()
    with open(log_path, "ab") as log:
        try:
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise StartFailure(f"exec: {argv[0]!r}: {error.strerror or error}") from None
    start_time = _start_time(popen.pid)
    with _pids_lock, open(state_dir / PIDS_FILE, "a") as record:
        record.write(f"{popen.pid} {start_time}\n")
    return ContainerProcess(popen, log_path, started_at)


def termination_message(log_path: Path) -> str:
    """The log's last 80 lines, at most its last 2048 bytes (the kubelet's FallbackToLogsOnError)."""
    try:
        with open(log_path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 64 * 1024))
            tail = log.read()
    except OSError:
        return ""
    lines = tail.splitlines()[-TERMINATION_MESSAGE_LINES:]
    text = b"\n".join(lines)[-TERMINATION_MESSAGE_BYTES:]
    return text.decode(errors="replace")


def stop_leftovers(state_dir: Path) -> int:
    """SIGKILLs the process group of every recorded container still running; returns how many."""
    record = state_dir / PIDS_FILE
    if not record.is_file():
        return 0
    stopped = 0
    for line in record.read_text().splitlines():
        pid_text, _, start_time = line.partition(" ")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if start_time and _start_time(pid) == start_time:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                stopped += 1
    record.unlink(missing_ok=True)
    return stopped
