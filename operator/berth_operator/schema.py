"""Turns the pydantic API models into *structural* Kubernetes OpenAPI v3 schemas.

pydantic's JSON Schema is close to what a CRD needs but not the same: Kubernetes forbids `$ref`,
`title` is noise, optionals are expressed by leaving a field out of `required` (not by
`anyOf: [..., null]`), `exclusiveMinimum` is a boolean, and `additionalProperties: false` is not
allowed beside `properties`. This module rewrites one into the other and refuses any keyword it does
not know, so a model change that the API server would reject fails here, in a unit test, first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Keywords copied through unchanged (after their sub-schemas are converted).
_PASSTHROUGH = {
    "type",
    "description",
    "enum",
    "format",
    "pattern",
    "required",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
}


class UnsupportedSchemaError(ValueError):
    """A model uses a JSON Schema construct that has no structural Kubernetes equivalent."""


def structural_schema(model: type[BaseModel], *, with_defaults: bool) -> dict[str, Any]:
    """The model's OpenAPI v3 schema as a CRD accepts it.

    `with_defaults=False` drops every default (status fields must not be defaulted by the server).
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, with_defaults, path=model.__name__)


def _convert(
    node: dict[str, Any], definitions: dict[str, Any], with_defaults: bool, path: str
) -> dict[str, Any]:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        # The field's own description and default win over the referenced class's.
        merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return _convert(merged, definitions, with_defaults, path)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
        if len(branches) != 1:
            raise UnsupportedSchemaError(f"{path}: a union of several types is not structural")
        outer = {key: value for key, value in node.items() if key != "anyOf"}
        return _convert({**branches[0], **outer}, definitions, with_defaults, path)

    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _PASSTHROUGH:
            result[key] = value
        elif key == "anyOf":  # int-or-string: the branches are plain types
            result[key] = [{"type": branch["type"]} for branch in value]
        elif key == "properties":
            result[key] = {
                name: _convert(child, definitions, with_defaults, f"{path}.{name}")
                for name, child in value.items()
            }
        elif key == "items":
            result[key] = _convert(value, definitions, with_defaults, f"{path}[]")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                result[key] = _convert(value, definitions, with_defaults, f"{path}{{}}")
            # `false` is implied: the API server prunes unknown fields.
        elif key == "default":
            if with_defaults and value is not None:
                result[key] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            result[bound] = value
            result[key] = True
        elif key == "const":
            result["enum"] = [value]
        else:
            raise UnsupportedSchemaError(f"{path}: JSON Schema keyword {key!r} has no CRD equivalent")
    if "type" not in result and not (
        result.get("x-kubernetes-int-or-string") or result.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise UnsupportedSchemaError(f"{path}: every structural schema node needs a type")
    return result
