"""Containers of the local node as real (tiny) processes: exits, restarts, stop sequence, probes.

Why real processes: what is under test is signals, exit codes and log tails, which a fake would
only restate. Each process is a Python one-liner that lives well under a second.
"""

from __future__ import annotations

import http.server
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.local_node.backoff import CrashLoopBackOff
from tests.cluster.local_node.container import ContainerRunner
from tests.cluster.local_node.launch import Launch
from tests.cluster.local_node.probes import ProbeWorker, container_port, run_handler
from tests.cluster.local_node.process import PIDS_FILE, start_process, stop_leftovers, termination_message
from tests.cluster.local_node.records import Running, Terminated, Waiting


def _until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _runner(spec: dict[str, object], events: list[tuple[str, str, str]]) -> ContainerRunner:
    return ContainerRunner(
        spec,
        CrashLoopBackOff(1, 4),
        "ContainerCreating",
        wake=lambda: None,
        emit=lambda kind, reason, message: events.append((kind, reason, message)),
        grace_seconds=5,
    )


def _launch(tmp_path: Path, code: str, *args: str) -> Launch:
    return Launch(
        [sys.executable, "-c", code, *args], {"PATH": os.environ["PATH"]}, tmp_path, (), "127.0.0.1"
    )


def test_an_exit_becomes_terminated_with_the_logs_tail_and_a_restart_moves_it_to_last_state(
    tmp_path: Path,
) -> None:
    events: list[tuple[str, str, str]] = []
    runner = _runner({"name": "crash", "image": "img"}, events)
    code = "import sys; print('loading', flush=True); print('bad weights', file=sys.stderr); sys.exit(3)"
    runner.start(_launch(tmp_path, code), tmp_path / "logs", tmp_path)
    _until(lambda: isinstance(runner.snapshot().state, Terminated))
    first = runner.snapshot().state
    assert isinstance(first, Terminated)
    assert (first.exit_code, first.reason, first.message) == (3, "Error", "loading\nbad weights")
    assert first.container_id.startswith("berth-local://")
    assert (tmp_path / "logs/crash/0.log").read_text() == "loading\nbad weights\n"

    runner.enter_backoff("back-off 1s restarting failed container=crash pod=p")
    waiting = runner.snapshot()
    assert waiting.state == Waiting("CrashLoopBackOff", "back-off 1s restarting failed container=crash pod=p")
    assert waiting.last_state == first

    runner.start(_launch(tmp_path, "print('fine')"), tmp_path / "logs", tmp_path)
    _until(lambda: runner.snapshot().restart_count == 1 and isinstance(runner.snapshot().state, Terminated))
    second = runner.snapshot()
    assert second.last_state == first
    assert isinstance(second.state, Terminated) and second.state.reason == "Completed"
    assert second.state.message == ""  # logs become the message only on failure
    assert (tmp_path / "logs/crash/1.log").read_text() == "fine\n"
    assert [reason for _, reason, _ in events] == ["Started", "Started"]


def test_a_missing_executable_is_a_start_error_that_counts_as_an_exit(tmp_path: Path) -> None:
    events: list[tuple[str, str, str]] = []
    runner = _runner({"name": "c"}, events)
    launch = Launch(["no-such-binary-berth"], {"PATH": "/nonexistent"}, tmp_path, (), "127.0.0.1")
    runner.start(launch, tmp_path / "logs", tmp_path)
    state = runner.snapshot().state
    assert isinstance(state, Terminated)
    assert (state.exit_code, state.reason) == (128, "StartError")
    assert "no-such-binary-berth" in state.message
    assert events[0][:2] == ("Warning", "Failed")


GRACEFUL = """
import os, signal, sys, time
def on_term(signum, frame):
    open(os.path.join(sys.argv[1], "sigterm"), "w").write(repr(time.time()))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("serving", flush=True)
while True:
    time.sleep(0.05)
"""


def test_stop_runs_the_pre_stop_hook_then_sigterm(tmp_path: Path) -> None:
    events: list[tuple[str, str, str]] = []
    hook = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time())); time.sleep(0.3)"
    spec = {
        "name": "main",
        "lifecycle": {"preStop": {"exec": {"command": ["python", "-c", hook, str(tmp_path / "prestop")]}}},
    }
    runner = _runner(spec, events)
    runner.start(_launch(tmp_path, GRACEFUL, str(tmp_path)), tmp_path / "logs", tmp_path)
    _until(lambda: (tmp_path / "logs/main/0.log").read_text() == "serving\n")
    runner.stop(grace_seconds=5)
    state = runner.snapshot().state
    assert isinstance(state, Terminated) and state.exit_code == 0
    pre_stop = float((tmp_path / "prestop").read_text())
    sigterm = float((tmp_path / "sigterm").read_text())
    assert sigterm - pre_stop >= 0.3  # SIGTERM only after the hook returned
    assert ("Normal", "Killing", "Stopping container main") in events


def test_a_process_that_ignores_sigterm_is_killed_when_the_grace_period_ends(tmp_path: Path) -> None:
    runner = _runner({"name": "stubborn"}, [])
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
    code += "time.sleep(60)"
    runner.start(_launch(tmp_path, code), tmp_path / "logs", tmp_path)
    _until(lambda: (tmp_path / "logs/stubborn/0.log").read_text() == "up\n")
    began = time.monotonic()
    runner.stop(grace_seconds=0.1)  # the kubelet still allows 2 s after SIGTERM
    state = runner.snapshot().state
    assert isinstance(state, Terminated)
    assert (state.exit_code, state.signal) == (137, 9)
    assert 1.9 <= time.monotonic() - began < 5


def test_leftover_processes_are_killed_by_their_recorded_pid(tmp_path: Path) -> None:
    process = start_process(
        [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path, tmp_path / "l.log", tmp_path
    )
    assert str(process.pid) in (tmp_path / PIDS_FILE).read_text()
    assert stop_leftovers(tmp_path) == 1
    assert process.popen.wait(timeout=5) == -9
    assert not (tmp_path / PIDS_FILE).exists()
    assert stop_leftovers(tmp_path) == 0


def test_termination_message_is_the_last_80_lines_within_2048_bytes(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text("".join(f"line {n}\n" for n in range(200)))
    assert termination_message(log).splitlines() == [f"line {n}" for n in range(120, 200)]
    log.write_text("x" * 5000 + "\nend\n")
    assert len(termination_message(log)) == 2048 and termination_message(log).endswith("\nend")
    assert termination_message(tmp_path / "missing.log") == ""


@pytest.fixture
def http_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


def test_http_probes_use_named_ports_and_report_like_the_kubelet(http_server: int) -> None:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": http_server}]}
    assert container_port("http", container) == http_server
    assert run_handler(
        {"httpGet": {"path": "/ready", "port": "http"}}, container, "127.0.0.1", 1, _no_exec
    ) == (True, "")
    assert run_handler(
        {"httpGet": {"path": "/x", "port": http_server}}, container, "127.0.0.1", 1, _no_exec
    ) == (
        False,
        "HTTP probe failed with statuscode: 503",
    )
    passed, message = run_handler(
        {"httpGet": {"path": "/", "port": "metrics"}}, container, "127.0.0.1", 1, _no_exec
    )
    assert not passed and "'metrics' is not a named port" in message
    passed, message = run_handler({"tcpSocket": {"port": http_server}}, container, "127.0.0.1", 1, _no_exec)
    assert passed


def _no_exec(command: list[str], timeout: float) -> tuple[bool, str]:
    raise AssertionError("no exec expected")


def test_probe_results_change_only_past_their_thresholds() -> None:
    script = iter([False, False, False, True, True])
    calls: list[tuple[bool | None, str]] = []
    done = threading.Event()

    def run_exec(command: list[str], timeout: float) -> tuple[bool, str]:
        passed = next(script, True)
        return passed, "" if passed else "not yet"

    def on_result(kind: str, result: bool | None, message: str) -> None:
        calls.append((result, message))
        if result is True:
            done.set()

    probe = {
        "exec": {"command": ["check"]},
        "periodSeconds": 0.01,
        "failureThreshold": 2,
        "successThreshold": 2,
    }
    worker = ProbeWorker(
        "readiness", probe, {"name": "c"}, "127.0.0.1", time.monotonic(), run_exec, on_result
    )
    worker.start()
    assert done.wait(5)
    worker.stop()
    assert calls == [(None, "not yet"), (False, "not yet"), (False, "not yet"), (True, "")]


def test_running_state_reports_its_start(tmp_path: Path) -> None:
    runner = _runner({"name": "c"}, [])
    runner.start(_launch(tmp_path, "import time; time.sleep(5)"), tmp_path / "logs", tmp_path)
    snapshot = runner.snapshot()
    assert isinstance(snapshot.state, Running)
    assert snapshot.ready and snapshot.started  # no probes: ready once running
    runner.stop(1, run_pre_stop=False)
