"""operator/Dockerfile agrees with the chart: a slim base, the non-root user the chart runs as, and
`python -m berth_operator` as the entry point, read from the Dockerfile itself (the image is built
and run by tests/integration/test_operator_image.py where buildah is installed; these checks keep the
two files from disagreeing everywhere)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import REPO_ROOT, Chart

DOCKERFILE = REPO_ROOT / "operator" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    instructions = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            instructions.append((keyword.upper(), argument.strip()))
    return instructions


def test_final_stage_is_a_slim_python_base_by_default() -> None:
    instructions = _instructions()
    defaults = dict(
        argument.split("=", 1) for keyword, argument in instructions if keyword == "ARG" and "=" in argument
    )
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda name: defaults[name.group(1)], argument.split()[0])
        for keyword, argument in instructions
        if keyword == "FROM"
    ]
    assert bases, "no FROM in operator/Dockerfile"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-[a-z]+)?", bases[-1]), bases[-1]


def test_runs_python_m_berth_operator_as_the_charts_non_root_user(chart: Chart) -> None:
    instructions = _instructions()
    final_stage = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :]
    users = [argument for keyword, argument in final_stage if keyword == "USER"]
    assert users, "the final stage sets no USER, so it would run as root"
    user, _, group = users[-1].partition(":")
    pod_security = chart.render().only("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert int(user) == pod_security["runAsUser"] != 0
    assert int(group) == pod_security["runAsGroup"] != 0
    entrypoints = [json.loads(argument) for keyword, argument in final_stage if keyword == "ENTRYPOINT"]
    assert entrypoints == [["python", "-m", "berth_operator"]]


def _copy_build_context(context: Path) -> None:
    """Lays out in `context` what the build stage's COPY instructions put under its WORKDIR."""
    for keyword, argument in _instructions():
        if keyword != "COPY" or argument.startswith("--from"):
            continue
        *sources, destination = argument.split()
        target = context / destination
        for source in sources:
            origin = REPO_ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, target / origin.name)


def test_files_the_dockerfile_copies_are_enough_to_build_the_operator_package(tmp_path: Path) -> None:
    """Builds the wheel from exactly what the build stage COPYs, as `pip install .` does there."""
    context = tmp_path / "context"
    _copy_build_context(context)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("berth-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"berth_operator/__main__.py", "berth_operator/settings.py"} <= names
