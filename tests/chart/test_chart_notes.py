"""What NOTES.txt tells a user after `helm install`: the release's own names, the two images (and a
warning when the runtime image is the unpushed default), and the README's quickstart -- an ungated
model (examples/quickstart.yaml, the same spec), `kubectl wait`, a port-forward to its Service and a
chat completion whose body names the model that spec serves.

Rendered without a cluster: `helm install --dry-run` still asks the API server for its version, so
the test renders NOTES.txt through `tpl` in a copy of the chart, with the chart's own helpers.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART_DIR, REPO_ROOT, Chart

QUICKSTART = REPO_ROOT / "examples" / "quickstart.yaml"
_RENDER_NOTES = """apiVersion: v1
kind: ConfigMap
metadata: {name: notes}
data:
  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}
"""


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart (links resolved) whose NOTES.txt renders as a ConfigMap's data."""
    copy = tmp_path_factory.mktemp("notes") / "berth"
    shutil.copytree(CHART_DIR, copy, symlinks=False)
    (copy / "templates" / "NOTES.txt").rename(copy / "notes.txt")
    (copy / "templates" / "zz-notes.yaml").write_text(_RENDER_NOTES)
    return copy


def _notes(chart: Chart, chart_copy: Path, release: str, namespace: str, values: dict[str, Any]) -> str:
    values_file = chart.values_dir / f"notes-{release}-{len(values)}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [
            *(chart.helm, "template", release, str(chart_copy), "--namespace", namespace),
            *("--show-only", "templates/zz-notes.yaml", "--values", str(values_file)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def _example(notes: str) -> dict[str, Any]:
    text = textwrap.dedent(notes.split("cat <<YAML | kubectl apply -f -\n", 1)[1].split("YAML\n", 1)[0])
    return dict(yaml.safe_load(text))


def _command(notes: str, start: str) -> list[str]:
    """The NOTES command line that starts with `start` (continuation lines joined), split as a shell would."""
    lines = notes.replace("\\\n", " ").splitlines()
    (line,) = [line.strip() for line in lines if line.strip().startswith(start)]
    return shlex.split(line.removesuffix("&"))


def test_defaults_name_the_release_and_deploy_the_ungated_quickstart_model(
    chart: Chart, notes_chart: Path
) -> None:
    notes = _notes(chart, notes_chart, "berth", "berth-system", {})

    assert "kubectl -n berth-system rollout status deployment/berth" in notes
    assert "Operator image: ghcr.io/berth-dev/berth-operator:0.1.0" in notes
    assert "Runtime image:  ghcr.io/berth-dev/berth-runtime:0.1.0 (the operator's default;" in notes
    example = _example(notes)
    quickstart = yaml.safe_load(QUICKSTART.read_text())
    assert example["spec"] == quickstart["spec"]
    assert example["metadata"] == {**quickstart["metadata"], "namespace": "default"}
    assert example["spec"]["model"]["source"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "credentialsSecretRef" not in example["spec"]["model"]
    assert "meta-llama" not in notes
    name = example["metadata"]["name"]
    assert _command(notes, "kubectl -n default wait") == [
        *("kubectl", "-n", "default", "wait", "--for=condition=Ready"),
        *(f"inferencedeployment/{name}", "--timeout=15m"),
    ]
    assert _command(notes, "kubectl -n default port-forward") == [
        *("kubectl", "-n", "default", "port-forward", f"service/{name}", "8000:8000"),
    ]
    curl = _command(notes, "curl")
    assert curl[curl.index("-s") + 1] == "http://127.0.0.1:8000/v1/chat/completions"
    body = json.loads(curl[curl.index("-d") + 1])
    assert body["model"] == example["spec"]["model"]["name"]
    assert body["messages"][0]["role"] == "user"


def test_pushed_images_watched_namespaces_and_a_release_name_carry_into_every_command(
    chart: Chart, notes_chart: Path
) -> None:
    values = {
        "image": {"repository": "registry.example.com/berth/berth-operator", "tag": "0.1.0"},
        "operator": {"runtimeImage": "registry.example.com/berth/berth-runtime:0.1.0"},
        "watchNamespaces": ["team-a", "team-b"],
    }
    notes = _notes(chart, notes_chart, "inference", "ops", values)

    assert "Operator image: registry.example.com/berth/berth-operator:0.1.0" in notes
    assert "Runtime image:  registry.example.com/berth/berth-runtime:0.1.0\n" in notes
    assert "the operator's default" not in notes
    assert "kubectl -n ops rollout status deployment/inference-berth" in notes
    assert _example(notes)["metadata"]["namespace"] == "team-a"
    assert _command(notes, "kubectl -n team-a wait")[-2] == "inferencedeployment/smollm2"
    assert _command(notes, "kubectl -n team-a port-forward")[-2] == "service/smollm2"
