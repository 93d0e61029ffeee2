"""Volumes of the local node: host folders, files from ConfigMaps and Secrets, the kubelet's errors."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.local_node.envvars import ContainerConfigError, PodFacts
from tests.cluster.local_node.rewrite import Mount
from tests.cluster.local_node.volumes import (
    MountError,
    VolumeSources,
    config_map_bytes,
    container_mounts,
    secret_bytes,
    set_up_volumes,
)

CONFIG_MAPS = {"runtime": {"config.json": b"{}", "extra.txt": b"x"}, "kube-root-ca.crt": {"ca.crt": b"CA"}}
SECRETS = {"chat-key": {"api-key": b"s3cret", "other": b"o"}}


def _pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "team", "uid": "u1", "labels": {"app": "web", "tier": "a"}},
        "spec": {"volumes": volumes},
    }


def _set_up(tmp_path: Path, volumes: list[dict[str, Any]]) -> dict[str, Path]:
    pod = _pod(volumes)
    tokens: list[tuple[str | None, int]] = []

    def token(audience: str | None, expiration: int) -> str:
        tokens.append((audience, expiration))
        return "token-for-web"

    def config_maps(name: str) -> Mapping[str, bytes] | None:
        return CONFIG_MAPS.get(name)

    def secrets(name: str) -> Mapping[str, bytes] | None:
        return SECRETS.get(name)

    sources = VolumeSources(config_maps, secrets, token, PodFacts(pod, "10.213.0.5", "10.213.0.1"))
    return set_up_volumes(pod, tmp_path / "pod", tmp_path / "claims", sources)


def test_every_volume_kind_becomes_a_host_folder(tmp_path: Path) -> None:
    host = tmp_path / "host-data"
    paths = _set_up(
        tmp_path,
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "config", "configMap": {"name": "runtime"}},
            {
                "name": "api-key",
                "secret": {
                    "secretName": "chat-key",
                    "items": [{"key": "api-key", "path": "key"}],
                    "defaultMode": 0o440,
                },
            },
            {"name": "weights", "persistentVolumeClaim": {"claimName": "llama-weights", "readOnly": True}},
            {"name": "data", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    ]
                },
            },
        ],
    )
    assert paths["scratch"] == tmp_path / "pod/volumes/scratch" and paths["scratch"].is_dir()
    assert paths["dshm"].is_dir()
    assert sorted(p.name for p in paths["config"].iterdir()) == ["config.json", "extra.txt"]
    assert [p.name for p in paths["api-key"].iterdir()] == ["key"]
    assert (paths["api-key"] / "key").read_bytes() == b"s3cret"
    assert stat.S_IMODE((paths["api-key"] / "key").stat().st_mode) == 0o440
    assert paths["weights"] == tmp_path / "claims/team/llama-weights" and paths["weights"].is_dir()
    assert paths["data"] == host and host.is_dir()
    assert (paths["info"] / "labels").read_text() == 'app="web"\ntier="a"'
    assert (paths["info"] / "name").read_text() == "web"


def test_the_service_account_volume_is_projected_with_a_requested_token(tmp_path: Path) -> None:
    paths = _set_up(
        tmp_path,
        [
            {
                "name": "kube-api-access-x1",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                                ]
                            }
                        },
                    ]
                },
            }
        ],
    )
    folder = paths["kube-api-access-x1"]
    assert (folder / "token").read_text() == "token-for-web"
    assert (folder / "ca.crt").read_text() == "CA"
    assert (folder / "namespace").read_text() == "team"


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (
            {"name": "api-key", "secret": {"secretName": "chat-key-absent"}},
            'MountVolume.SetUp failed for volume "api-key" : secret "chat-key-absent" not found',
        ),
        (
            {"name": "config", "configMap": {"name": "nope"}},
            'MountVolume.SetUp failed for volume "config" : configmap "nope" not found',
        ),
        (
            {"name": "config", "configMap": {"name": "runtime", "items": [{"key": "missing", "path": "m"}]}},
            'MountVolume.SetUp failed for volume "config" : '
            "configmap references non-existent config key: missing",
        ),
        (
            {"name": "nfs", "nfs": {"server": "x", "path": "/"}},
            'MountVolume.SetUp failed for volume "nfs" : volume type nfs is not supported on a local node',
        ),
    ],
)
def test_mount_failures_carry_the_kubelets_words(
    tmp_path: Path, volume: dict[str, Any], message: str
) -> None:
    with pytest.raises(MountError) as raised:
        _set_up(tmp_path, [volume])
    assert str(raised.value) == message


def test_optional_objects_may_be_missing(tmp_path: Path) -> None:
    paths = _set_up(tmp_path, [{"name": "s", "secret": {"secretName": "absent", "optional": True}}])
    assert list(paths["s"].iterdir()) == []


def test_an_item_path_cannot_leave_its_volume(tmp_path: Path) -> None:
    with pytest.raises(MountError, match="leaves the volume"):
        _set_up(
            tmp_path,
            [
                {
                    "name": "c",
                    "configMap": {"name": "runtime", "items": [{"key": "extra.txt", "path": "../../escape"}]},
                }
            ],
        )


def test_container_mounts_follow_sub_paths(tmp_path: Path) -> None:
    volumes = {"config": tmp_path / "config", "cache": tmp_path / "cache"}
    (tmp_path / "config").mkdir()
    mounts = container_mounts(
        {
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "cache", "mountPath": "/cache", "subPathExpr": "$(POD)"},
            ]
        },
        volumes,
        {"POD": "web-1"},
    )
    assert mounts == [Mount("/etc/app", tmp_path / "config"), Mount("/cache", tmp_path / "cache/web-1")]
    assert (tmp_path / "cache/web-1").is_dir()
    with pytest.raises(ContainerConfigError, match='cannot find volume "ghost"'):
        container_mounts({"volumeMounts": [{"name": "ghost", "mountPath": "/g"}]}, volumes, {})


def test_wire_data_is_decoded() -> None:
    assert config_map_bytes({"data": {"a": "1"}, "binaryData": {"b": "AAE="}}) == {
        "a": b"1",
        "b": b"\x00\x01",
    }
    assert secret_bytes({"data": {"k": "czNjcmV0"}}) == {"k": b"s3cret"}
