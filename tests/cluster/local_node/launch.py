"""From a container spec to the host process's argv, environment and working directory.

Why: this is the whole difference between "a container" and "a process on this host", kept in one
pure function so it can be read and unit-tested as a unit: the environment is resolved as the
kubelet resolves it (``envvars``), ``$(VAR)`` is expanded in command and args, mounts map to host
folders (``volumes``) and the two documented substitutions are applied (``rewrite``). The image is
never pulled, so its ENTRYPOINT, CMD, ENV and WORKDIR are unknown: a container must give
``command``; a few variables stand in for the image's environment (see ``image_env``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.cluster.local_node.envvars import Lookup, PodFacts, expand_command, resolve_env
from tests.cluster.local_node.rewrite import Mount, rewrite_argv, rewrite_env, rewrite_path
from tests.cluster.local_node.volumes import container_mounts

_PASSED_THROUGH = ("LANG", "LC_ALL", "TZ")


class ContainerCreateError(Exception):
    """The container can never be created as specified here (shown as ``CreateContainerError``)."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: tuple[Mount, ...]
    pod_ip: str

    def exec_argv(self, command: list[str]) -> list[str]:
        """An exec probe's or hook's command, with the same substitutions as the container's."""
        return rewrite_argv(command, self.mounts, self.pod_ip)


def image_env(pod_name: str, home: Path) -> dict[str, str]:
    """What stands in for the image's ENV: PATH with the project's environment first (so console
    scripts installed there resolve), HOME in the pod's folder, HOSTNAME as a container's hostname."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    env = {"PATH": path, "HOME": str(home), "HOSTNAME": pod_name}
    env.update({name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ})
    return env


def service_env(api_server: str) -> dict[str, str]:
    """KUBERNETES_SERVICE_HOST/PORT as the kubelet sets them, but naming the API server's own address:
    this host cannot route Service ClusterIPs (there is no kube-proxy), the API server it can reach."""
    parts = urlsplit(api_server)
    host, port = parts.hostname or "127.0.0.1", str(parts.port or 443)
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
    }


def prepare_launch(
    container: Mapping[str, Any],
    facts: PodFacts,
    volume_paths: Mapping[str, Path],
    config_maps: Lookup,
    secrets: Lookup,
    base_env: Mapping[str, str],
    services: Mapping[str, str],
    default_cwd: Path,
) -> Launch:
    """Raises ContainerConfigError (missing ConfigMap/Secret/key: retried) or ContainerCreateError."""
    declared = resolve_env(container, facts, config_maps, secrets, services)
    mounts = tuple(container_mounts(container, volume_paths, declared))
    command = list(container.get("command") or [])
    if not command:
        raise ContainerCreateError(
            f"container {container.get('name')!r} has no command: a local node does not pull images, "
            "so it cannot know the image's entrypoint"
        )
    words = expand_command([*command, *(container.get("args") or [])], declared)
    argv = rewrite_argv(words, mounts, facts.pod_ip)
    env = {**base_env, **rewrite_env(declared, mounts, facts.pod_ip)}
    # A workingDir inside a volume maps to its folder; any other (the image's own folders) would
    # name a host path that is not the container's, so the pod's folder stands in for it.
    working_dir = container.get("workingDir") or ""
    mapped = rewrite_path(working_dir, mounts)
    cwd = Path(mapped) if working_dir and mapped != working_dir else default_cwd
    return Launch(argv, env, cwd, mounts, facts.pod_ip)
