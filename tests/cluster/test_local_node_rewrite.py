"""The local node's two substitutions (mount paths, bind addresses) and the launch they build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.cluster.local_node.envvars import ContainerConfigError, PodFacts
from tests.cluster.local_node.launch import (
    ContainerCreateError,
    Launch,
    image_env,
    prepare_launch,
    service_env,
)
from tests.cluster.local_node.rewrite import Mount, rewrite_argv, rewrite_env, rewrite_path

HOST = Path("/state/pods/ns_web_u/volumes")
MOUNTS = [
    Mount("/models", HOST / "models"),
    Mount("/models/cache", HOST / "cache"),
    Mount("/tmp", HOST / "tmp"),
]
IP = "10.213.7.5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/models", str(HOST / "models")),
        ("/models/llama/config.json", str(HOST / "models/llama/config.json")),
        ("/models/cache/x", str(HOST / "cache/x")),  # the longest mountPath wins
        ("/models2/llama", "/models2/llama"),  # a prefix of a word is not a path prefix
        ("/etc/hosts", "/etc/hosts"),
        ("models/relative", "models/relative"),
    ],
)
def test_paths_beginning_with_a_mount_path_move_to_its_host_folder(value: str, expected: str) -> None:
    assert rewrite_path(value, MOUNTS) == expected


def test_argv_gets_both_substitutions_and_the_projects_python() -> None:
    argv = [
        "python3",
        "-m",
        "berth_runtime",
        "serve",
        "--model",
        "/models/llama",
        "--config=/models/cache/c.json",
        "--host",
        "0.0.0.0",
        "--metrics-host=0.0.0.0",
        "--listen",
        "[::]:9000",
        "--bind",
        "0.0.0.0:8000",
        "--note=/notamount",
    ]
    assert rewrite_argv(argv, MOUNTS, IP) == [
        sys.executable,
        "-m",
        "berth_runtime",
        "serve",
        "--model",
        str(HOST / "models/llama"),
        f"--config={HOST / 'cache/c.json'}",
        "--host",
        IP,
        f"--metrics-host={IP}",
        "--listen",
        f"{IP}:9000",
        "--bind",
        f"{IP}:8000",
        "--note=/notamount",
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["server", "--host", "localhost"], ["server", "--host", IP]),  # --host's value, whatever it is
        (["server", "--host=127.0.0.1"], ["server", f"--host={IP}"]),
        (["/usr/bin/python3", "-V"], ["/usr/bin/python3", "-V"]),  # only a bare python is replaced
        (["python3.11", "-V"], [sys.executable, "-V"]),
        (["run", "python"], ["run", "python"]),  # only argv[0]
        (["echo", "0.0.0.0.1", "1.0.0.0"], ["echo", "0.0.0.0.1", "1.0.0.0"]),
    ],
)
def test_bind_and_interpreter_rules_touch_only_what_they_name(argv: list[str], expected: list[str]) -> None:
    assert rewrite_argv(argv, MOUNTS, IP) == expected


def test_env_values_are_rewritten_as_whole_words() -> None:
    env = {"HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache", "HOST": "0.0.0.0", "PATHS": "/a:/tmp", "N": "3"}
    assert rewrite_env(env, MOUNTS, IP) == {
        "HOME": str(HOST / "tmp"),
        "XDG_CACHE_HOME": str(HOST / "tmp/.cache"),
        "HOST": IP,
        "PATHS": "/a:/tmp",  # not a path that begins with a mount
        "N": "3",
    }


POD = {"metadata": {"name": "web", "namespace": "ns", "uid": "u"}, "spec": {}}


def _launch(container: dict[str, object], tmp_path: Path) -> Launch:
    return prepare_launch(
        container,
        PodFacts(POD, IP, "10.213.7.1"),
        {"models": tmp_path / "models", "tmp": tmp_path / "tmp"},
        lambda name: {"dir": "/models/llama"} if name == "cfg" else None,
        lambda name: None,
        image_env("web", tmp_path / "home"),
        service_env("https://127.0.0.1:6443"),
        tmp_path / "root",
    )


def test_a_launch_resolves_env_expands_args_and_maps_folders(tmp_path: Path) -> None:
    launch = _launch(
        {
            "name": "runtime",
            "command": ["python", "-m", "berth_runtime"],
            "args": ["serve", "--model", "$(MODEL_DIR)", "--host", "0.0.0.0"],
            "env": [
                {"name": "MODEL_DIR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "dir"}}},
                {"name": "HOME", "value": "/tmp"},
            ],
            "volumeMounts": [
                {"name": "models", "mountPath": "/models"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "workingDir": "/models",
        },
        tmp_path,
    )
    assert launch.argv == [
        sys.executable,
        "-m",
        "berth_runtime",
        "serve",
        "--model",
        str(tmp_path / "models/llama"),
        "--host",
        IP,
    ]
    assert launch.env["MODEL_DIR"] == str(tmp_path / "models/llama")
    assert launch.env["HOME"] == str(tmp_path / "tmp")  # the pod's HOME beats the stand-in
    assert launch.env["HOSTNAME"] == "web"
    assert launch.env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert launch.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert launch.cwd == tmp_path / "models"


def test_a_working_dir_outside_every_volume_becomes_the_pods_folder(tmp_path: Path) -> None:
    launch = _launch({"name": "c", "command": ["true"], "workingDir": "/app"}, tmp_path)
    assert launch.cwd == tmp_path / "root"


def test_a_container_without_command_cannot_be_created(tmp_path: Path) -> None:
    with pytest.raises(ContainerCreateError, match="has no command"):
        _launch({"name": "c", "image": "nginx"}, tmp_path)


def test_a_missing_config_map_stops_the_launch_with_the_kubelets_message(tmp_path: Path) -> None:
    with pytest.raises(ContainerConfigError, match=r'^configmap "other" not found$'):
        _launch(
            {"name": "c", "command": ["true"], "envFrom": [{"configMapRef": {"name": "other"}}]}, tmp_path
        )
