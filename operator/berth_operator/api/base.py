"""The base every API model shares: camelCase wire names, no unknown fields, and cross-field rules
that exist once and are enforced twice.

A cross-field rule is written as a `CrossFieldRule`: a CEL expression (rendered into the CRD's
`x-kubernetes-validations`, so the API server rejects a bad object at `kubectl apply` time) and the
same rule as a Python predicate (run by pydantic, so the operator never acts on an object that a
stale or hand-edited CRD let through). Keeping both side by side in the model is what keeps them in
step; `tests/unit/test_api_rules.py` checks that every rule rejects what it promises to reject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class CrossFieldRule:
    """One validation rule over several fields of one object.

    `cel` is evaluated by the API server with `self` bound to the object; `holds` is the same rule
    for the operator. `cel` is None where the schema already enforces the rule another way (list
    map keys, for instance). `message` must name the fields and say what is accepted.
    """

    cel: str | None
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None

    def to_crd(self) -> dict[str, str]:
        if self.cel is None:
            raise ValueError(f"rule {self.message!r} has no CEL form")
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path is not None:
            rule["fieldPath"] = self.field_path
        return rule


def cel_matches(subject: str, pattern: str) -> str:
    """A CEL expression: `subject` matches the RE2 `pattern` (a raw CEL string, so backslashes are
    the regular expression's own)."""
    if "'" in pattern:
        raise ValueError(f"pattern {pattern!r} cannot be a raw single-quoted CEL string")
    return f"{subject}.matches(r'{pattern}')"


def _add_cross_field_rules(schema: dict[str, Any], model_class: type) -> None:
    rules: tuple[CrossFieldRule, ...] = getattr(model_class, "cross_field_rules", ())
    validations = [rule.to_crd() for rule in rules if rule.cel is not None]
    if validations:
        schema["x-kubernetes-validations"] = validations


class ApiModel(BaseModel):
    """Base of the spec models: wire names are camelCase, unknown fields are an error."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra=_add_cross_field_rules,
    )

    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cross_field_rules(self) -> ApiModel:
        broken = [rule for rule in self.cross_field_rules if not rule.holds(self)]
        if broken:
            raise ValueError("; ".join(rule.message for rule in broken))
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def section_default(model_class: type[ApiModel]) -> dict[str, Any]:
    """The CRD default of an optional spec section: the section with every field at its default.

    Not `{}`: the API server checks CEL rules against a default as written, before defaulting the
    fields inside it, so an empty default would fail rules that read those fields.
    """
    return {"default": model_class().to_wire()}


class StatusModel(BaseModel):
    """Base of the status models: camelCase, and fields written by newer writers are ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
