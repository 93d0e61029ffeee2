"""Small value types the spec reuses: object references, resource quantities, free-form objects.

Their JSON schema is written out by hand where pydantic's would not be a valid *structural*
Kubernetes schema (quantities are int-or-string with a CEL bound).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from berth_operator.api.base import ApiModel

# The API server's grammar for resource.Quantity without its sign: requests, limits and size limits
# are never negative. The exponent form is bounded to two digits (1e1000 parses, but means nothing).
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]{1,2}))?$"
)
# RFC 1123 subdomain: the names of Secrets, ConfigMaps, PersistentVolumeClaims, ServiceAccounts.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A key of a Secret's data (what `kubectl create secret --from-file` accepts).
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# A label value (node labels such as nvidia.com/gpu.product).
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label key (also a taint key): an optional DNS-subdomain prefix and '/', then a name of at most 63.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity that matches QUANTITY_PATTERN, e.g. "64Gi" -> 68719476736."""
    if not re.fullmatch(QUANTITY_PATTERN, text):
        raise ValueError(f"{text!r} is not a non-negative quantity such as 500m, 8, 64Gi or 1e9")
    number = re.match(r"^[0-9.]+", text)
    assert number is not None  # guaranteed by the pattern
    digits, suffix = number.group(), text[number.end() :]
    if suffix in _BINARY_SUFFIXES:
        return Decimal(digits) * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return Decimal(digits).scaleb(_DECIMAL_SUFFIXES[suffix])
    return Decimal(digits).scaleb(int(suffix[1:]))


def _quantity_to_text(value: object) -> object:
    # YAML turns `cpu: 8` into an integer; Kubernetes accepts it, so do we.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


@dataclass(frozen=True)
class QuantityAtMost(GroupedMetadata):
    """Makes `Annotated[str, QuantityAtMost("64Ti")]` a non-negative quantity of at most the bound:
    an integer or a string on the wire, checked by the API server (pattern and a CEL bound) and
    again by pydantic."""

    maximum: str

    def __iter__(self) -> Iterator[object]:
        limit, maximum = parse_quantity(self.maximum), self.maximum

        def within_bound(value: str) -> str:
            if parse_quantity(value) > limit:
                raise ValueError(f"{value!r} is too large: must be a quantity from 0 to {maximum}")
            return value

        # The pattern checks strings only; an integer reaches the bounds as its string form.
        bound_rule = {
            "rule": (
                "!isQuantity(string(self)) || (quantity(string(self)).compareTo(quantity('0')) >= 0 "
                f"&& quantity(string(self)).compareTo(quantity('{maximum}')) <= 0)"
            ),
            "message": f"must be a quantity from 0 to {maximum}",
        }
        yield BeforeValidator(_quantity_to_text)
        yield Field(pattern=QUANTITY_PATTERN, max_length=64)
        yield AfterValidator(within_bound)
        yield WithJsonSchema(
            {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY_PATTERN,
                "maxLength": 64,
                "x-kubernetes-int-or-string": True,
                "x-kubernetes-validations": [bound_rule],
            }
        )


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace, by name."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the referenced object in the InferenceDeployment's namespace.",
    )


class SecretKeySelector(ApiModel):
    """One key of a Secret in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret in the InferenceDeployment's namespace.",
    )
    key: str = Field(
        default="api-key",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key within the Secret whose value is used.",
    )
