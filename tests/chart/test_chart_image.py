"""operator/Dockerfile agrees with the chart: a slim base, the non-root user the chart runs as, and
`python -m berth_operator` as the entry point. (No container engine here to build it; these checks
keep the two files from disagreeing.)"""

from __future__ import annotations

import json
import re

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


def test_final_stage_is_a_slim_python_base() -> None:
    bases = [argument.split()[0] for keyword, argument in _instructions() if keyword == "FROM"]
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
