"""A real Prometheus server (Debian's `prometheus` package) and stand-in runtime replicas, as
processes the live autoscaling tests start and stop by PID.

Why: the autoscaler must be proven against the real PromQL engine -- rate windows, histogram
quantiles, staleness -- not against canned answers. Prometheus listens on 127.0.0.1 on a free port,
scrapes every second, and attaches to each exporter the labels Prometheus' Kubernetes discovery
and the chart's PodMonitor relabelings would give a runtime pod (`namespace`,
`app_kubernetes_io_instance`, `pod`, and `berth_dev_revision` for an exporter given the pod label
`berth.dev/revision`), which is what the operator selects by. Stopping and restarting it (same
port, same data) is part of the tests.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth_operator.rollout.analysis import REVISION_SERIES_LABEL
from tests.cluster.processes import free_port
from tests.integration.load_exporter import LoadProfile, write_profile

READY_TIMEOUT_SECONDS = 30.0
SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Exporter:
    """One stand-in replica: its port, its load profile file, its process, and the value of its pod
    label `berth.dev/revision` (None: the pod has no such label)."""

    pod: str
    port: int
    profile_path: Path
    process: subprocess.Popen[bytes] | None = None
    revision: str | None = None

    def target_labels(self, namespace: str, instance: str) -> dict[str, str]:
        """The labels Prometheus attaches to this pod's series (the chart's relabelings)."""
        labels = {"namespace": namespace, "app_kubernetes_io_instance": instance, "pod": self.pod}
        if self.revision is not None:
            labels[REVISION_SERIES_LABEL] = self.revision
        return labels

    def start(self, log_dir: Path) -> None:
        with open(log_dir / f"{self.pod}.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.load_exporter",
                    "--port",
                    str(self.port),
                    "--profile",
                    str(self.profile_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def set_load(self, profile: LoadProfile) -> None:
        write_profile(self.profile_path, profile)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class LiveMetrics:
    """Prometheus plus exporters for the pods of one InferenceDeployment `instance` in `namespace`:
    `replicas` of them without a revision label, or one per entry of `revisions`, labelled with it."""

    def __init__(
        self,
        work_dir: Path,
        namespace: str,
        instance: str,
        replicas: int | None = None,
        revisions: Sequence[str | None] | None = None,
    ) -> None:
        if revisions is not None and replicas is not None and replicas != len(revisions):
            raise ValueError(f"replicas={replicas} contradicts {len(revisions)} revisions; give one of them")
        pod_revisions = list(revisions) if revisions is not None else [None] * (replicas or 1)
        self.work_dir = work_dir
        self.namespace = namespace
        self.instance = instance
        self.port = free_port()
        self.exporters = [
            Exporter(f"{instance}-exporter-{n}", free_port(), work_dir / f"load-{n}.json", revision=revision)
            for n, revision in enumerate(pod_revisions)
        ]
        self._prometheus: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        targets = [
            {
                "targets": [f"127.0.0.1:{exporter.port}"],
                "labels": exporter.target_labels(self.namespace, self.instance),
            }
            for exporter in self.exporters
        ]
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [{"job_name": "berth-runtime", "static_configs": targets}],
        }
        return json.dumps(config)  # JSON is YAML

    def start(self, load: LoadProfile) -> None:
        """Start the exporters with `load`, then Prometheus; return once it has scraped them all."""
        for exporter in self.exporters:
            exporter.set_load(load)
            if exporter.process is None:
                exporter.start(self.work_dir)
        self.start_prometheus()

    def start_prometheus(self) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus is not installed (scripts/test.sh installs Debian's package)")
        config_path = self.work_dir / "prometheus.yml"
        config_path.write_text(self._config())
        with open(self.work_dir / "prometheus.log", "ab") as log:
            self._prometheus = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.work_dir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_scraping(self._prometheus)

    def _wait_scraping(self, prometheus: subprocess.Popen[bytes]) -> None:
        """Return once Prometheus is ready and has scraped every exporter; raise after the bound."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if prometheus.poll() is not None:
                raise RuntimeError(f"prometheus exited with {prometheus.returncode}:\n{self.log()}")
            if self._ready() and self._scraping():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"prometheus was not scraping the exporters in {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log()}"
        )

    def add_exporter(self, revision: str | None, load: LoadProfile) -> Exporter:
        """One more stand-in replica, labelled with `revision`, started with `load`; returns once the
        running Prometheus (reloaded with SIGHUP) scrapes it. For a revision known only once a rollout
        has begun: the operator computes it from the spec."""
        number = len(self.exporters)
        exporter = Exporter(
            f"{self.instance}-exporter-{number}",
            free_port(),
            self.work_dir / f"load-{number}.json",
            revision=revision,
        )
        exporter.set_load(load)
        exporter.start(self.work_dir)
        self.exporters.append(exporter)
        if self._prometheus is not None:
            (self.work_dir / "prometheus.yml").write_text(self._config())
            self._prometheus.send_signal(signal.SIGHUP)
            self._wait_scraping(self._prometheus)
        return exporter

    def _scraping(self) -> bool:
        """Every exporter scraped at least once (the first scrape waits for discovery, up to ~5 s)."""
        up = self.query(f'up{{namespace="{self.namespace}",app_kubernetes_io_instance="{self.instance}"}}')
        return len(up) == len(self.exporters) and all(sample["value"][1] == "1" for sample in up)

    def stop_prometheus(self) -> None:
        if self._prometheus is not None:
            _stop(self._prometheus)
            self._prometheus = None

    def set_load(self, profile: LoadProfile) -> None:
        for exporter in self.exporters:
            exporter.set_load(profile)

    def exporter(self, revision: str) -> Exporter:
        """The exporter labelled with `revision`."""
        for exporter in self.exporters:
            if exporter.revision == revision:
                return exporter
        raise KeyError(f"no exporter with revision {revision!r}")

    def stop(self) -> None:
        self.stop_prometheus()
        for exporter in self.exporters:
            exporter.stop()

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (for the tests' own view of what Prometheus sees)."""
        data = urllib.parse.urlencode({"query": promql}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/query", data=data, timeout=5) as response:
            body = json.loads(response.read())
        return list(body["data"]["result"])

    def query_range(
        self, promql: str, start: float, end: float, step: float = 1.0
    ) -> list[tuple[float, float]]:
        """(time, value) points of a one-series range query; NaN points are left out."""
        data = urllib.parse.urlencode({"query": promql, "start": start, "end": end, "step": step}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range", data=data, timeout=5) as response:
            body = json.loads(response.read())
        result = body["data"]["result"]
        if not result:
            return []
        return [(float(t), float(v)) for t, v in result[0]["values"] if v != "NaN"]

    def log(self) -> str:
        path = self.work_dir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
