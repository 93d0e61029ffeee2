"""Where a pod's container logs are, for ``python -m tests.cluster logs`` and for tests that print
them when they fail.

Why: there is no kubelet API here, so ``kubectl logs`` cannot reach these containers. The files
follow the kubelet's /var/log/pods layout under the agent's state folder:
``pods/<namespace>_<pod>_<uid>/logs/<container>/<restartCount>.log`` (the folder is also named on
each Node in the ``node.berth.dev/pod-logs`` annotation).
"""

from __future__ import annotations

from pathlib import Path


def _run_number(path: Path) -> int:
    return int(path.stem) if path.stem.isdigit() else -1


def pod_log_files(pods_root: Path, namespace: str, pod: str, previous: bool = False) -> dict[str, Path]:
    """Container name -> its current log (or the run before it, with ``previous``), for the newest
    pod of that name in that namespace; empty when there is none."""
    folders = sorted(pods_root.glob(f"{namespace}_{pod}_*"), key=lambda folder: folder.stat().st_mtime)
    if not folders:
        return {}
    found = {}
    logs = folders[-1] / "logs"
    for container in sorted(logs.iterdir()) if logs.is_dir() else []:
        runs = sorted(container.glob("*.log"), key=_run_number)
        index = -2 if previous else -1
        if len(runs) >= -index:
            found[container.name] = runs[index]
    return found


def read_pod_logs(pods_root: Path, namespace: str, pod: str, tail_lines: int | None = None) -> str:
    """Every container's current log of the pod, each under a header line (for failure output)."""
    sections = []
    for container, path in pod_log_files(pods_root, namespace, pod).items():
        lines = path.read_text(errors="replace").splitlines()
        if tail_lines is not None:
            lines = lines[-tail_lines:]
        sections.append(f"----- {namespace}/{pod} [{container}] {path} -----\n" + "\n".join(lines))
    return "\n".join(sections) or f"(no logs for {namespace}/{pod} under {pods_root})"
