"""Generate the Helm chart's values.schema.json from its documented values.yaml.

values.yaml is the one place a chart value is defined and documented; the JSON Schema Helm validates
values against is derived from it, so the two cannot drift (tests/chart checks the committed schema
is current). The rules:

- the comment block directly above a key is its description;
- a ``# @schema {...}`` line in that block holds JSON Schema keywords the default cannot show
  (enums, bounds, item types) and is merged over what the default implies;
- the default's type is the property's type; a non-empty mapping becomes an object whose keys are
  its properties and which forbids any other key, unless ``@schema`` says otherwise; an empty
  mapping is a free-form object and an empty list an array, both typed further by ``@schema``;
- a key without a description is an error, except an entry of a free-form mapping (one whose
  ``@schema`` sets ``additionalProperties``), which is an example value rather than a property;
- a null default without a ``@schema`` type is an error.

Usage: ``python scripts/gen_chart_schema.py [--check] [CHART_DIR]`` (default charts/berth). With
``--check`` nothing is written; the exit status says whether the committed schema is current.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIALECT = "https://json-schema.org/draft-07/schema#"
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*):(?:\s|$)")
_SCHEMA_MARK = "@schema"


class ValuesDocError(ValueError):
    """values.yaml breaks a documentation rule; the message names the key and the line."""


@dataclass
class KeyDoc:
    """What the comments above one key say about it."""

    line: int
    description: str
    schema: dict[str, Any] = field(default_factory=dict)


def read_key_docs(text: str) -> dict[tuple[str, ...], KeyDoc]:
    """Map each mapping key's path to the comment block directly above it."""
    docs: dict[tuple[str, ...], KeyDoc] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings enclosing the current line
    comment: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped[1:].strip())
            continue
        match = _KEY_LINE.match(raw)
        if match is None:  # a list item or a continuation line: belongs to the key above it
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match["key"])
        stack.append((indent, match["key"]))
        docs[path] = _parse_comment(path, number, comment)
        comment = []
    return docs


def _parse_comment(path: tuple[str, ...], line: int, comment: list[str]) -> KeyDoc:
    description: list[str] = []
    schema: dict[str, Any] = {}
    for text in comment:
        if text.startswith(_SCHEMA_MARK):
            try:
                extra = json.loads(text[len(_SCHEMA_MARK) :])
            except json.JSONDecodeError as error:
                raise ValuesDocError(
                    f"values.yaml line {line}: the @schema comment of {'.'.join(path)!r} is not JSON: {error}"
                ) from error
            if not isinstance(extra, dict):
                raise ValuesDocError(
                    f"values.yaml line {line}: the @schema comment of {'.'.join(path)!r} must be a JSON "
                    f"object, got {extra!r}"
                )
            schema.update(extra)
        else:
            description.append(text)
    return KeyDoc(line=line, description=" ".join(description).strip(), schema=schema)


def _type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def property_schema(path: tuple[str, ...], value: Any, docs: dict[tuple[str, ...], KeyDoc]) -> dict[str, Any]:
    """The JSON Schema of one value, from its default and its documentation."""
    name = ".".join(path)
    doc = docs.get(path)
    if doc is None or not doc.description:
        where = f" (line {doc.line})" if doc else ""
        raise ValuesDocError(f"values.yaml: {name!r}{where} has no description comment directly above it")
    schema: dict[str, Any] = {"description": doc.description}
    value_type = _type_of(value)
    if value_type is None and "type" not in doc.schema:
        raise ValuesDocError(
            f"values.yaml line {doc.line}: {name!r} defaults to null; give its type in an @schema comment"
        )
    if value_type is not None:
        schema["type"] = value_type
    if isinstance(value, dict) and value:
        free_form = doc.schema.get("additionalProperties", False) is not False
        properties = {
            key: property_schema((*path, key), child, docs)
            for key, child in value.items()
            if not (free_form and _undocumented((*path, key), docs))
        }
        if properties:
            schema["properties"] = properties
        schema["additionalProperties"] = False
    elif value_type in {"string", "integer", "number", "boolean"}:
        schema["default"] = value
    if isinstance(value, list) and value and "items" not in doc.schema:
        item_types = {_type_of(item) for item in value}
        if len(item_types) == 1 and None not in item_types:
            schema["items"] = {"type": item_types.pop()}
    schema.update(doc.schema)
    return schema


def _undocumented(path: tuple[str, ...], docs: dict[tuple[str, ...], KeyDoc]) -> bool:
    """A key with no description: an example entry of a free-form map, not a property of its own."""
    doc = docs.get(path)
    return doc is None or not doc.description


def build_schema(values_text: str) -> dict[str, Any]:
    """The whole values.schema.json for a values.yaml text."""
    values = yaml.safe_load(values_text) or {}
    if not isinstance(values, dict):
        raise ValuesDocError("values.yaml must be a mapping at the top level")
    docs = read_key_docs(values_text)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Values of the berth Helm chart",
        "type": "object",
        "properties": {key: property_schema((key,), value, docs) for key, value in values.items()},
        "additionalProperties": False,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "chart", nargs="?", default=str(Path(__file__).resolve().parent.parent / "charts/berth")
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed schema is not current")
    args = parser.parse_args(argv)
    chart = Path(args.chart)
    try:
        expected = render(build_schema((chart / "values.yaml").read_text()))
    except ValuesDocError as error:
        print(f"gen_chart_schema: {error}", file=sys.stderr)
        return 2
    target = chart / "values.schema.json"
    if args.check:
        if not target.exists() or target.read_text() != expected:
            print(
                f"gen_chart_schema: {target} is out of date; run: python scripts/gen_chart_schema.py",
                file=sys.stderr,
            )
            return 1
        return 0
    target.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
