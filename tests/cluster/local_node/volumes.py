"""Pod volumes as host folders, and each container's mounts onto them.

Why: a process has no mount namespace, so every volume becomes a folder under the agent's state
folder and the command line is rewritten to it (see ``rewrite``). What each volume type becomes:

- ``emptyDir`` (``medium: Memory`` too, e.g. ``/dev/shm``): ``<pod>/volumes/<name>``, removed with
  the pod's folder; sizeLimit is not enforced.
- ``configMap``, ``secret``, ``downwardAPI``, ``projected`` (the service-account token comes from the
  TokenRequest API, as the kubelet gets it): files written once when the pod starts, honouring
  ``items``, ``defaultMode`` and ``optional``; later edits of the object are not propagated.
- ``persistentVolumeClaim``: ``<state>/claims/<namespace>/<claimName>``, shared by every pod that
  names the claim and kept across pods, as a volume outlives its pods.
- ``hostPath``: that host path itself (the host is the node).

A missing ConfigMap or Secret (or key) fails the mount with the kubelet's words; the pod worker
reports it as a ``FailedMount`` Event and retries, and the pod stays ``ContainerCreating``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.local_node.envvars import ContainerConfigError, PodFacts, expand, field_value
from tests.cluster.local_node.rewrite import Mount

BytesLookup = Callable[[str], Mapping[str, bytes] | None]
TokenSource = Callable[[str | None, int], str]
"""(audience, expirationSeconds) -> a service-account token bound to the pod."""

DEFAULT_MODE = 0o644


class MountError(Exception):
    """A volume could not be set up; ``str()`` is the kubelet's FailedMount message."""

    def __init__(self, volume: str, cause: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {cause}')
        self.volume = volume


@dataclass(frozen=True)
class VolumeSources:
    """Where volume contents come from: the API server, through the pod worker."""

    config_maps: BytesLookup
    secrets: BytesLookup
    token: TokenSource
    facts: PodFacts


def pod_folder(pods_root: Path, pod: Mapping[str, Any]) -> Path:
    """``<pods_root>/<namespace>_<name>_<uid>``, the kubelet's /var/log/pods naming."""
    metadata = pod["metadata"]
    return pods_root / f"{metadata['namespace']}_{metadata['name']}_{metadata['uid']}"


def _write(folder: Path, relative: str, content: bytes, mode: int) -> None:
    target = (folder / relative).resolve()
    if folder.resolve() not in target.parents:
        raise ContainerConfigError(f"item path {relative!r} leaves the volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    target.chmod(mode)


def _keyed_files(
    folder: Path, source: Mapping[str, Any], data: Mapping[str, bytes] | None, missing_key: str
) -> None:
    """Writes a configMap/secret source's keys (all, or ``items``) into ``folder``."""
    if data is None:
        return
    default_mode = int(source.get("defaultMode", DEFAULT_MODE))
    items = source.get("items")
    if not items:
        for key, content in data.items():
            _write(folder, key, content, default_mode)
        return
    for item in items:
        key = item["key"]
        if key not in data:
            if source.get("optional"):
                continue
            raise ContainerConfigError(f"{missing_key}: {key}")
        _write(folder, item.get("path", key), data[key], int(item.get("mode", default_mode)))


def _fetch(kind: str, name: str, lookup: BytesLookup, optional: bool) -> Mapping[str, bytes] | None:
    data = lookup(name)
    if data is None and not optional:
        raise ContainerConfigError(f'{kind} "{name}" not found')
    return data


def _downward_files(folder: Path, items: list[Mapping[str, Any]], facts: PodFacts, mode: int) -> None:
    metadata = facts.pod.get("metadata", {})
    for item in items:
        path = item.get("fieldRef", {}).get("fieldPath", "")
        if path in ("metadata.labels", "metadata.annotations"):
            pairs = sorted((metadata.get(path.split(".")[1]) or {}).items())
            text = "\n".join(f'{key}="{value}"' for key, value in pairs)
        elif path:
            text = field_value(path, facts)
        else:
            raise ContainerConfigError(f"downwardAPI item {item.get('path')}: only fieldRef is supported")
        _write(folder, item["path"], text.encode(), int(item.get("mode", mode)))


def _projected(folder: Path, spec: Mapping[str, Any], sources: VolumeSources) -> None:
    mode = int(spec.get("defaultMode", DEFAULT_MODE))
    for source in spec.get("sources") or []:
        if "configMap" in source:
            config_map = source["configMap"]
            data = _fetch(
                "configmap", config_map["name"], sources.config_maps, bool(config_map.get("optional"))
            )
            keyed = {"defaultMode": mode, **config_map}
            _keyed_files(folder, keyed, data, "configmap references non-existent config key")
        elif "secret" in source:
            secret = source["secret"]
            data = _fetch("secret", secret["name"], sources.secrets, bool(secret.get("optional")))
            _keyed_files(folder, {"defaultMode": mode, **secret}, data, "references non-existent secret key")
        elif "downwardAPI" in source:
            _downward_files(folder, source["downwardAPI"].get("items") or [], sources.facts, mode)
        elif "serviceAccountToken" in source:
            token_spec = source["serviceAccountToken"]
            token = sources.token(token_spec.get("audience"), int(token_spec.get("expirationSeconds", 3607)))
            _write(folder, token_spec["path"], token.encode(), mode)


def _set_up(volume: Mapping[str, Any], folder: Path, claims_root: Path, sources: VolumeSources) -> Path:
    namespace = sources.facts.pod["metadata"]["namespace"]
    if "hostPath" in volume:
        host = Path(str(volume["hostPath"]["path"]))
        kind = volume["hostPath"].get("type", "")
        if kind == "DirectoryOrCreate":
            host.mkdir(parents=True, exist_ok=True)
        elif kind == "Directory" and not host.is_dir():
            raise ContainerConfigError(f"hostPath type check failed: {host} is not a directory")
        return host
    if "persistentVolumeClaim" in volume:
        claim: Path = claims_root / namespace / str(volume["persistentVolumeClaim"]["claimName"])
        claim.mkdir(parents=True, exist_ok=True)
        return claim
    folder.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        return folder
    if "configMap" in volume:
        spec = volume["configMap"]
        data = _fetch("configmap", spec.get("name", ""), sources.config_maps, bool(spec.get("optional")))
        _keyed_files(folder, spec, data, "configmap references non-existent config key")
    elif "secret" in volume:
        spec = volume["secret"]
        data = _fetch("secret", spec.get("secretName", ""), sources.secrets, bool(spec.get("optional")))
        _keyed_files(folder, spec, data, "references non-existent secret key")
    elif "downwardAPI" in volume:
        spec = volume["downwardAPI"]
        _downward_files(
            folder, spec.get("items") or [], sources.facts, int(spec.get("defaultMode", DEFAULT_MODE))
        )
    elif "projected" in volume:
        _projected(folder, volume["projected"], sources)
    else:
        kinds = ", ".join(sorted(key for key in volume if key != "name"))
        raise ContainerConfigError(f"volume type {kinds} is not supported on a local node")
    return folder


def set_up_volumes(
    pod: Mapping[str, Any], pod_dir: Path, claims_root: Path, sources: VolumeSources
) -> dict[str, Path]:
    """Every volume of the pod as a host folder, by volume name; raises MountError at the first failure."""
    paths: dict[str, Path] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        name = volume["name"]
        try:
            paths[name] = _set_up(volume, pod_dir / "volumes" / name, claims_root, sources)
        except ContainerConfigError as error:
            raise MountError(name, str(error)) from None
        except OSError as error:
            raise MountError(name, f"{error.strerror}: {error.filename}") from None
    return paths


def container_mounts(
    container: Mapping[str, Any], volume_paths: Mapping[str, Path], env: Mapping[str, str]
) -> list[Mount]:
    """The container's volumeMounts onto host folders (subPath, and subPathExpr expanded from env)."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        host = volume_paths.get(mount["name"])
        if host is None:
            raise ContainerConfigError(f'cannot find volume "{mount["name"]}" to mount into container')
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env.get)
        if sub_path:
            host = host / sub_path
            if not host.exists():
                host.mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath as a folder
        mounts.append(Mount(mount["mountPath"], host))
    return mounts


def config_map_bytes(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's data and binaryData as bytes per key."""
    result = {key: value.encode() for key, value in (config_map.get("data") or {}).items()}
    result.update(
        {key: base64.b64decode(value) for key, value in (config_map.get("binaryData") or {}).items()}
    )
    return result


def secret_bytes(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's data (base64 on the wire) as bytes per key."""
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
