"""The generated CRD: committed copy is current, and the schema is structural and documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from berth_operator import crd
from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api.resource import NAME_MAX_LENGTH, NAME_PATTERN, NAME_RULE_MESSAGE
from berth_operator.schema import UnsupportedSchemaError, structural_schema

REPO = Path(__file__).resolve().parents[2]


def _schema() -> dict[str, Any]:
    version: dict[str, Any] = crd.build_crd()["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crd_matches_the_models() -> None:
    committed = (REPO / "crds" / crd.CRD_FILE).read_text()
    assert committed == crd.render_crd(), "run `python -m berth_operator.crd` and commit crds/"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    (tmp_path / crd.CRD_FILE).write_text("stale: true\n")
    assert crd.main(["--output-dir", str(tmp_path), "--check"]) == 1
    assert crd.main(["--output-dir", str(tmp_path)]) == 0
    assert crd.main(["--output-dir", str(tmp_path), "--check"]) == 0


def test_every_property_has_a_description() -> None:
    undocumented = [
        path
        for path, node in _walk(_schema())
        if path and not path.startswith(".metadata") and not node.get("description")
    ]
    # Array items and map values are described by their parent field.
    undocumented = [path for path in undocumented if not path.endswith(("[]", "{}"))]
    # metadata's schema is the API server's own; a CRD may not describe it.
    assert undocumented == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert "$ref" not in node, path
        assert "title" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node, path
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "properties" in node:
            assert node["type"] == "object", path
            assert "additionalProperties" not in node, path
            assert set(node.get("required", [])) <= set(node["properties"]), path
        if node.get("exclusiveMinimum") is not None:
            assert node["exclusiveMinimum"] is True, path


def test_lists_and_strings_that_rules_iterate_are_bounded() -> None:
    # CEL's cost estimate needs bounds: every list has maxItems, every map maxProperties.
    for path, node in _walk(_schema()):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, path


def test_list_map_keys_are_required_in_their_items() -> None:
    for path, node in _walk(_schema()):
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            item = node["items"]
            for key in keys:
                assert key in item.get("required", []) or "default" in item["properties"][key], path


def test_status_has_no_defaults_and_spec_sections_default_to_their_defaults() -> None:
    # The API server checks CEL rules against a default as written (before defaulting inside it),
    # so a section's default is the section with every field at its default, not `{}`.
    schema = _schema()
    assert [path for path, node in _walk(schema["properties"]["status"]) if "default" in node] == []
    spec = schema["properties"]["spec"]["properties"]
    defaults = InferenceDeploymentSpec.model_validate(
        {"model": {"name": "m", "source": "hf://o/m"}}
    ).to_wire()
    for section in ("runtime", "resources", "scheduling", "autoscaling", "rollout", "serving"):
        assert spec[section]["default"] == defaults[section], section
    assert spec["runtime"]["default"]["kvCache"] == {"blockSize": 16, "prefixCaching": False}
    assert "default" not in spec["model"]
    assert schema["properties"]["spec"]["required"] == ["model"]


def test_subresources_names_and_printer_columns() -> None:
    version = crd.build_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert version["subresources"]["status"] == {}
    assert [column["name"] for column in version["additionalPrinterColumns"]] == [
        "Model",
        "Revision",
        "Ready",
        "Desired",
        "TTFT-p95",
        "SLO-1h",
        "Rollout",
        "Phase",
        "Age",
    ]
    names = crd.build_crd()["spec"]["names"]
    assert names["shortNames"] == ["idep"]
    assert names["categories"] == ["berth"]


def test_printer_columns_point_at_real_fields() -> None:
    schema = _schema()
    version = crd.build_crd()["spec"]["versions"][0]
    for column in version["additionalPrinterColumns"]:
        node = schema
        for part in column["jsonPath"].strip(".").split("."):
            node = node["properties"][part] if part in node.get("properties", {}) else {}
        assert node or column["jsonPath"] == ".metadata.creationTimestamp", column["jsonPath"]


def test_cel_rules_are_present_where_fields_interact() -> None:
    rules = [
        rule["rule"] for _, node in _walk(_schema()) for rule in node.get("x-kubernetes-validations", [])
    ]
    joined = "\n".join(rules)
    for fragment in (
        "self.minReplicas <= self.maxReplicas",
        "self.resources.gpu.count in [0, self.runtime.tensorParallelSize]",
        "has(self.numTokens) == (self.method != 'none')",
        "self.autoscaling.maxGpus >= self.autoscaling.minReplicas * self.resources.gpu.count",
    ):
        assert fragment in joined


def test_the_name_is_checked_where_the_api_server_reports_its_field() -> None:
    # A root-level CEL rule reports "<nil>" as its field; a schema on metadata.name names it.
    name = _schema()["properties"]["metadata"]["properties"]["name"]
    assert name["maxLength"] == NAME_MAX_LENGTH
    assert [rule["message"] for rule in name["x-kubernetes-validations"]] == [NAME_RULE_MESSAGE]
    assert NAME_PATTERN in name["x-kubernetes-validations"][0]["rule"]


def test_generated_yaml_round_trips() -> None:
    assert yaml.safe_load(crd.render_crd()) == crd.build_crd()


def test_unsupported_union_is_refused() -> None:
    from pydantic import BaseModel

    class Ambiguous(BaseModel):
        value: int | str

    with pytest.raises(UnsupportedSchemaError, match="Ambiguous"):
        structural_schema(Ambiguous, with_defaults=True)
