"""Benchmark: how long the local control plane (tests/cluster) takes to start, cold and warm.

Warm: the binaries are cached; ``up`` (certificates, etcd, API server, controller manager,
scheduler, KWOK, simulated nodes Ready) and ``down`` are timed, median of ``--runs``, with the
per-phase split. Beside it, a same-run baseline: executing the multi-call binary once
(``kubectl version --client``), the floor any start pays per process.
Cold (``--cold``): the Go build from an empty Go build cache into an empty berth cache (modules
already downloaded), then one start; about 12 minutes on 2 cores. Figures only; nothing fails.

    python -m bench.cluster_start [--runs 3] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster import launcher
from tests.cluster.build import ensure_binaries
from tests.cluster.simulation import Simulation

REPO_ROOT = Path(__file__).resolve().parents[1]


def _binary_exec_seconds(kubectl: Path, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([str(kubectl), "version", "--client"], capture_output=True, check=True)
        samples.append(time.monotonic() - started)
    return statistics.median(samples)


def warm(runs: int) -> None:
    binaries = ensure_binaries()
    up_seconds, down_seconds = [], []
    phases: dict[str, list[float]] = {}
    for run in range(runs):
        name = f"bench-start-{os.getpid()}-{run}"
        started = time.monotonic()
        cluster = launcher.up(name, Simulation())
        up_seconds.append(time.monotonic() - started)
        for phase, seconds in cluster.startup_seconds.items():
            phases.setdefault(phase, []).append(seconds)
        started = time.monotonic()
        launcher.down(name)
        down_seconds.append(time.monotonic() - started)
        print(f"run {run + 1}: up {up_seconds[-1]:.2f} s, down {down_seconds[-1]:.2f} s", flush=True)
    split = ", ".join(f"{phase} {statistics.median(values):.2f} s" for phase, values in phases.items())
    print(f"warm start (median of {runs}): up {statistics.median(up_seconds):.2f} s ({split})")
    print(f"warm stop  (median of {runs}): down {statistics.median(down_seconds):.2f} s")
    print(f"baseline: one exec of the multi-call binary {_binary_exec_seconds(binaries.kubectl, runs):.3f} s")


def cold() -> None:
    with tempfile.TemporaryDirectory(prefix="berth-cold-") as scratch:
        env = {
            **os.environ,
            "BERTH_CACHE": str(Path(scratch) / "berth"),
            "GOCACHE": str(Path(scratch) / "go-build"),
        }
        script = (
            "import time; from tests.cluster import launcher; t = time.monotonic(); "
            "c = launcher.up('bench-cold'); print(f'{time.monotonic() - t:.0f}', c.startup_seconds); "
            "launcher.down('bench-cold')"
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        total = time.monotonic() - started
        print(f"cold start (empty Go build cache, build + first up): {total:.0f} s; {result.stdout.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="warm starts to take the median of (default 3)")
    parser.add_argument("--cold", action="store_true", help="also time a cold build + start (~12 min)")
    arguments = parser.parse_args()
    if arguments.cold:
        cold()
    warm(arguments.runs)


if __name__ == "__main__":
    main()
