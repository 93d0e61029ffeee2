"""A real Prometheus (Debian's package) holding a day of known series, for the economics tests.

Why not stand-in exporters scraped live (live_metrics.py): the economics span the last hour and the
last day, and no test waits a day. Instead the series are written first, as OpenMetrics text with
timestamps, and turned into TSDB blocks by Prometheus' own `promtool tsdb create-blocks-from
openmetrics` (its backfill); Prometheus then starts on those blocks and answers real PromQL --
subqueries, `increase` with its extrapolation, `sum by (le)` -- over a day of data whose every
sample the test chose. Nothing is scraped. Samples may run into the future (up to the end given),
so an operator that evaluates "now" a minute later still sees replicas that are present.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.processes import free_port

SAMPLE_INTERVAL_SECONDS = 15
"""Seconds between two samples of a series: a 15 s scrape."""
BUCKETS_SECONDS = (0.025, 0.04, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.0)
"""Histogram bounds (a subset of the runtime's LATENCY_BUCKETS_SECONDS), then +Inf."""
READY_TIMEOUT_SECONDS = 60.0

Latencies = tuple[tuple[float, float], ...]
"""(latency in seconds, observations per second) pairs: constant streams of identical observations."""


@dataclass(frozen=True)
class Replica:
    """One replica's series from `start` to `end` (epoch seconds, on the sample grid): present all
    along, counters from 0 at `start` growing at constant rates."""

    labels: dict[str, str]
    start: int
    end: int
    output_tokens_per_second: float
    time_to_first_token: Latencies
    inter_token_latency: Latencies

    def times(self) -> range:
        return range(self.start, self.end + 1, SAMPLE_INTERVAL_SECONDS)


def _labels(labels: dict[str, str], **extra: str) -> str:
    merged = {**labels, **extra}
    return "{" + ",".join(f'{name}="{value}"' for name, value in merged.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value))  # round-trips exactly (no %g rounding of large counts)


def _histogram_lines(name: str, replicas: Sequence[Replica], latencies_of: str) -> list[str]:
    lines = [f"# TYPE {name} histogram"]
    for replica in replicas:
        latencies: Latencies = getattr(replica, latencies_of)
        bounds = [*BUCKETS_SECONDS, math.inf]
        for bound in bounds:
            le = "+Inf" if math.isinf(bound) else repr(bound)
            per_second = sum(rate for latency, rate in latencies if latency <= bound)
            series = f"{name}_bucket{_labels(replica.labels, le=le)}"
            lines += [f"{series} {_number(per_second * (t - replica.start))} {t}" for t in replica.times()]
        per_second = sum(rate for _, rate in latencies)
        seconds_per_second = sum(latency * rate for latency, rate in latencies)
        labels = _labels(replica.labels)
        lines += [
            f"{name}_count{labels} {_number(per_second * (t - replica.start))} {t}" for t in replica.times()
        ]
        lines += [
            f"{name}_sum{labels} {_number(seconds_per_second * (t - replica.start))} {t}"
            for t in replica.times()
        ]
    return lines


def openmetrics(replicas: Sequence[Replica]) -> str:
    """The replicas' series as OpenMetrics text, one metric family after another."""
    lines = ["# TYPE vllm:num_requests_running gauge"]
    for replica in replicas:
        labels = _labels(replica.labels)
        lines += [f"vllm:num_requests_running{labels} 1 {t}" for t in replica.times()]
    lines.append("# TYPE vllm:generation_tokens counter")
    for replica in replicas:
        labels = _labels(replica.labels)
        rate = replica.output_tokens_per_second
        lines += [
            f"vllm:generation_tokens_total{labels} {_number(rate * (t - replica.start))} {t}"
            for t in replica.times()
        ]
    lines += _histogram_lines("vllm:time_to_first_token_seconds", replicas, "time_to_first_token")
    lines += _histogram_lines("vllm:inter_token_latency_seconds", replicas, "inter_token_latency")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def prometheus_binaries() -> tuple[str, str] | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return None if prometheus is None or promtool is None else (prometheus, promtool)


class BackfilledPrometheus:
    """Prometheus on 127.0.0.1 (a free port) serving only the backfilled replicas; stopped by PID."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, replicas: Sequence[Replica]) -> None:
        binaries = prometheus_binaries()
        if binaries is None:
            raise RuntimeError("prometheus and promtool are not installed (Debian's prometheus package)")
        prometheus, promtool = binaries
        source, data = self.work_dir / "series.om.txt", self.work_dir / "tsdb"
        source.write_text(openmetrics(replicas))
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        config = self.work_dir / "prometheus.yml"
        config.write_text("global: {scrape_interval: 15s}\n")  # no scrape jobs: the blocks are all
        with open(self.work_dir / "prometheus.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=15d",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}:\n{self.log()}")
            if self._ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus was not ready in {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log(self) -> str:
        path = self.work_dir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
