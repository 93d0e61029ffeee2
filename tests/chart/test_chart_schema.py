"""values.schema.json is generated from values.yaml, is current, and makes Helm reject bad values
with a message that names the value."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from .conftest import CHART_DIR, REPO_ROOT, Chart, HelmError

GENERATOR = REPO_ROOT / "scripts" / "gen_chart_schema.py"


def _load_generator() -> SimpleNamespace:
    """The generator script's functions (scripts/ is not a package)."""
    return SimpleNamespace(**runpy.run_path(str(GENERATOR), run_name="gen_chart_schema"))


generator = _load_generator()


def test_committed_schema_is_generated_from_the_current_values_yaml() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_value_is_documented_and_every_object_forbids_unknown_keys() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def walk(node: dict[str, Any], default: Any, path: str) -> None:
        assert node.get("description"), f"{path} has no description"
        if isinstance(default, dict) and default and "properties" in node:
            if node["additionalProperties"] is False:
                assert set(node["properties"]) == set(default), path
            for key, child in node["properties"].items():
                walk(child, default[key], f"{path}.{key}")

    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(values)
    for key, node in schema["properties"].items():
        walk(node, values[key], key)


def test_generator_reads_descriptions_and_schema_annotations(tmp_path: Path) -> None:
    schema = generator.build_schema(
        "# Section.\n"
        "section:\n"
        "  # How many, at least 1.\n"
        '  # @schema {"minimum": 1}\n'
        "  count: 3\n"
        "\n"
        "  # Labels; any string values.\n"
        '  # @schema {"additionalProperties": {"type": "string"}}\n'
        "  labels:\n"
        "    example: yes-please\n"
        "# Optional text.\n"
        '# @schema {"type": ["string", "null"]}\n'
        "text: null\n"
    )
    section = schema["properties"]["section"]
    assert section["description"] == "Section."
    assert section["additionalProperties"] is False
    assert section["properties"]["count"] == {
        "description": "How many, at least 1.",
        "type": "integer",
        "default": 3,
        "minimum": 1,
    }
    labels = section["properties"]["labels"]
    assert "properties" not in labels  # "example" is a sample entry of a free-form map
    assert labels["additionalProperties"] == {"type": "string"}
    assert schema["properties"]["text"]["type"] == ["string", "null"]


@pytest.mark.parametrize(
    ("values_yaml", "message"),
    [
        ("undocumented: 1\n", "'undocumented' (line 1) has no description"),
        ("# Parent.\nparent:\n  child: true\n", "'parent.child' (line 3) has no description"),
        ("# Nothing.\nnothing: null\n", "'nothing' defaults to null; give its type"),
        ("# Broken.\n# @schema {minimum: 1}\nbroken: 2\n", "the @schema comment of 'broken' is not JSON"),
    ],
)
def test_generator_rejects_undocumented_or_untyped_values(values_yaml: str, message: str) -> None:
    with pytest.raises(generator.ValuesDocError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generator.build_schema(values_yaml)


def test_check_mode_reports_a_stale_schema(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("# A flag.\nflag: true\n")
    (tmp_path / "values.schema.json").write_text("{}\n")
    assert generator.main(["--check", str(tmp_path)]) == 1
    assert generator.main([str(tmp_path)]) == 0
    assert generator.main(["--check", str(tmp_path)]) == 0
    assert (
        json.loads((tmp_path / "values.schema.json").read_text())["properties"]["flag"]["type"] == "boolean"
    )


@pytest.mark.parametrize(
    ("values", "expected_in_message"),
    [
        ({"replicas": 2}, ["additional properties 'replicas' not allowed"]),
        ({"image": {"name": "x"}}, ["/image", "additional properties 'name' not allowed"]),
        ({"replicaCount": "two"}, ["/replicaCount", "want integer"]),
        ({"replicaCount": -1}, ["/replicaCount", "minimum"]),
        ({"operator": {"logLevel": "LOUD"}}, ["/operator/logLevel", "must be one of", "INFO"]),
        ({"crds": {"keep": "yes"}}, ["/crds/keep", "want boolean"]),
        ({"metrics": {"port": 70000}}, ["/metrics/port", "maximum"]),
        ({"watchNamespaces": ["Not_A_Namespace"]}, ["/watchNamespaces/0", "does not match pattern"]),
        ({"image": {"digest": "latest"}}, ["/image/digest", "does not match pattern"]),
        ({"nodeSelector": {"gpu": True}}, ["/nodeSelector/gpu", "want string"]),
        ({"operator": {"prometheusUrl": "prometheus:9090"}}, ["/operator/prometheusUrl", "pattern"]),
    ],
)
def test_schema_rejects_bad_values_naming_the_value(
    chart: Chart, values: dict[str, Any], expected_in_message: list[str]
) -> None:
    with pytest.raises(HelmError) as error:
        chart.render(values)
    message = str(error.value)
    assert "values don't meet the specifications of the schema" in message
    for fragment in expected_in_message:
        assert fragment in message, message
