"""Debian's real ``prometheus``, scraping the pods the local cluster's API server knows.

Why: the autoscaler selects a deployment's series by the labels Prometheus attaches to its pods'
targets (``namespace``, ``app_kubernetes_io_instance``, ``pod``: berth_operator.autoscaling.signals).
In a cluster the chart's PodMonitor (charts/berth/templates/podmonitor-runtime.yaml) makes them;
here the same selection and the same relabelings run in a plain Prometheus job, so what the
operator queries locally is what it would query in a cluster. The relabelings are read from the
chart's template, never copied by hand; the selection (the PodMonitor's matchLabels, its
``metrics`` port, no finished pods) is what the prometheus-operator generates for a PodMonitor.

Debian builds Prometheus without Kubernetes discovery, so ``python -m tests.cluster.prometheus``
is a small parent process: it watches the pods through the API server and keeps a
``file_sd_configs`` file equal to what ``kubernetes_sd_configs`` (role: pod) would discover
(tests/cluster/pod_targets.py), and runs Prometheus as its child. Prometheus picks file changes up
at once (inotify) and applies new targets within its usual 5 s. One PID stands for both: SIGTERM
stops Prometheus and then the parent; Prometheus dies with the parent even on SIGKILL.

Prometheus listens on 127.0.0.1 (a free port unless one is given), scrapes every 1 s by default
and keeps its data under ``<work_dir>/data`` (a restart on the same folder keeps the series).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import processes
from tests.cluster.api_access import from_kubeconfig
from tests.cluster.api_watch import KubeClient, list_and_watch
from tests.cluster.pod_targets import meta_label_name, pod_targets

log = logging.getLogger("prometheus-discovery")

REPO_ROOT = Path(__file__).resolve().parents[2]
POD_MONITOR_TEMPLATE = REPO_ROOT / "charts" / "berth" / "templates" / "podmonitor-runtime.yaml"
JOB_NAME = "berth-runtime"
METRICS_PORT = "metrics"
METRICS_PATH = "/metrics"
CONFIG_FILE = "prometheus.yml"
TARGETS_FILE = "pod-targets.json"
LOG_NAME = "prometheus"
START_TIMEOUT_SECONDS = 60.0
STOP_SECONDS = 15.0
"""How long Prometheus may take to shut down (it writes its head block) before it is killed."""

# PodMonitor field names (prometheus-operator's camelCase) -> Prometheus relabel_config keys.
_RELABEL_KEYS = {
    "action": "action",
    "sourceLabels": "source_labels",
    "separator": "separator",
    "targetLabel": "target_label",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
}


def template_block(template: str, key: str) -> Any:
    """The plain-YAML block under the first line ``<key>:`` of a Helm template, parsed.

    Raises ValueError when the key is missing or the block holds template logic, which only Helm
    could evaluate (the chart test that renders with Helm then shows what changed)."""
    lines = template.splitlines()
    start = next((n for n, line in enumerate(lines) if line.strip() == f"{key}:"), None)
    if start is None:
        raise ValueError(f"{POD_MONITOR_TEMPLATE.name}: no line '{key}:'")
    indent = len(lines[start]) - len(lines[start].lstrip())
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        if "{{" in line:
            raise ValueError(f"{POD_MONITOR_TEMPLATE.name}: '{key}' holds template logic: {line.strip()!r}")
        block.append(line)
    return yaml.safe_load(textwrap.dedent("\n".join(block)))


def chart_pod_monitor(template: Path = POD_MONITOR_TEMPLATE) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The PodMonitor's pod selector (matchLabels) and its relabelings, as the chart writes them."""
    text = template.read_text()
    return dict(template_block(text, "matchLabels")), list(template_block(text, "relabelings"))


def relabel_config(pod_monitor_rule: dict[str, Any]) -> dict[str, Any]:
    """One PodMonitor relabeling as a Prometheus ``relabel_config``."""
    unknown = set(pod_monitor_rule) - set(_RELABEL_KEYS)
    if unknown:
        raise ValueError(f"relabeling {pod_monitor_rule!r}: fields {sorted(unknown)} are not translated")
    return {_RELABEL_KEYS[key]: value for key, value in pod_monitor_rule.items()}


def selection_relabelings(match_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Keep only what a PodMonitor with these matchLabels and port ``metrics`` scrapes (the rules the
    prometheus-operator generates): matching pods, their ``metrics`` port, not finished pods."""
    rules: list[dict[str, Any]] = [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_pod_label_{meta_label_name(key)}",
                f"__meta_kubernetes_pod_labelpresent_{meta_label_name(key)}",
            ],
            "regex": f"({re.escape(value)});true",
        }
        for key, value in sorted(match_labels.items())
    ]
    rules.append(
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": METRICS_PORT,
        }
    )
    rules.append(
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}
    )
    return rules


def pod_selector(match_labels: dict[str, str]) -> str:
    """The PodMonitor's matchLabels as a label selector: only these pods are watched (as a
    ``kubernetes_sd_configs`` ``selectors`` entry would do); the keep rules check them again."""
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def prometheus_config(targets_file: Path, scrape_interval: str = "1s") -> dict[str, Any]:
    """The whole configuration: one job over the discovered pod targets, relabeled as the chart's
    PodMonitor does."""
    match_labels, relabelings = chart_pod_monitor()
    job = {
        "job_name": JOB_NAME,
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "metrics_path": METRICS_PATH,
        "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "30s"}],
        "relabel_configs": [*selection_relabelings(match_labels), *map(relabel_config, relabelings)],
    }
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [job],
    }


class PodTargetsFile:
    """The discovered pods, written as a file_sd file whenever their targets change."""

    def __init__(self, path: Path, namespaces: Sequence[str] = ()) -> None:
        self.path = path
        self._namespaces = set(namespaces)
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._written: list[dict[str, Any]] | None = None
        self.listed = asyncio.Event()

    def _wanted(self, pod: dict[str, Any]) -> bool:
        return not self._namespaces or pod["metadata"].get("namespace") in self._namespaces

    async def reset(self, pods: list[dict[str, Any]]) -> None:
        self._pods = {_pod_key(pod): pod for pod in pods if self._wanted(pod)}
        self._write()
        self.listed.set()

    async def changed(self, event_type: str, pod: dict[str, Any]) -> None:
        if event_type == "DELETED" or not self._wanted(pod):
            self._pods.pop(_pod_key(pod), None)
        else:
            self._pods[_pod_key(pod)] = pod
        self._write()

    def _write(self) -> None:
        groups = [group for _, pod in sorted(self._pods.items()) for group in pod_targets(pod)]
        if groups == self._written:
            return
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(groups, indent=1))
        os.replace(temporary, self.path)  # Prometheus never reads half a file
        self._written = groups


def _pod_key(pod: dict[str, Any]) -> tuple[str, str]:
    return str(pod["metadata"].get("namespace", "")), str(pod["metadata"]["name"])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the parent dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


async def _serve(args: argparse.Namespace) -> int:
    binary = shutil.which("prometheus")
    if binary is None:
        raise processes.StartError("prometheus is not installed: apt-get install prometheus")
    work_dir: Path = args.work_dir
    client = KubeClient(from_kubeconfig(args.kubeconfig, work_dir / "secrets"))
    targets = PodTargetsFile(work_dir / TARGETS_FILE, args.namespace)
    config_path = work_dir / CONFIG_FILE
    config_path.write_text(json.dumps(prometheus_config(targets.path, args.scrape_interval), indent=2))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    selector = pod_selector(chart_pod_monitor()[0])
    watch = asyncio.ensure_future(
        list_and_watch(client, "/api/v1/pods", selector, targets.reset, targets.changed)
    )
    try:
        await targets.listed.wait()
        child = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={work_dir / 'data'}",
            f"--storage.tsdb.retention.time={args.retention}",
            f"--web.listen-address=127.0.0.1:{args.port}",
            "--web.enable-lifecycle",  # POST /-/reload after editing the config
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        exited = asyncio.ensure_future(child.wait())
        await asyncio.wait([exited, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            child.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(exited), STOP_SECONDS)
            except TimeoutError:
                child.kill()
        return await exited
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.prometheus", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scrape-interval", default="1s")
    parser.add_argument("--retention", default="1d")
    parser.add_argument("--namespace", action="append", default=[], help="discover only here (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(_serve(args))


def start_prometheus(
    kubeconfig: Path,
    work_dir: Path,
    *,
    port: int | None = None,
    scrape_interval: str = "1s",
    namespaces: Sequence[str] = (),
) -> tuple[int, str]:
    """Starts Prometheus with its pod discovery (detached, output in ``<work_dir>/prometheus.log``)
    and returns ``(pid, url)`` once it is ready. The kubeconfig's user must be allowed to list and
    watch pods (the local cluster's admin kubeconfig is). Stop it with stop_prometheus."""
    if shutil.which("prometheus") is None:
        raise processes.StartError(
            "prometheus is not installed: apt-get install -y --no-install-recommends prometheus"
        )
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or processes.free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "tests.cluster.prometheus",
        f"--kubeconfig={kubeconfig.resolve()}",
        f"--work-dir={work_dir}",
        f"--port={port}",
        f"--scrape-interval={scrape_interval}",
        *(f"--namespace={namespace}" for namespace in namespaces),
    ]
    pid = processes.start(LOG_NAME, argv, work_dir, REPO_ROOT)
    try:
        processes.wait_until(
            lambda: processes.http_ok(f"{url}/-/ready"),
            START_TIMEOUT_SECONDS,
            "/-/ready",
            pid,
            work_dir,
            LOG_NAME,
        )
    except BaseException:
        stop_prometheus(pid, work_dir)
        raise
    return pid, url


def stop_prometheus(pid: int, work_dir: Path) -> None:
    """SIGTERM (Prometheus writes its head block, then the parent exits); SIGKILL after a grace
    period, which takes Prometheus down too. Only a PID whose command line names ``work_dir``."""
    processes.stop(pid, str(work_dir.resolve()), grace_seconds=STOP_SECONDS + 5)


if __name__ == "__main__":
    sys.exit(main())
