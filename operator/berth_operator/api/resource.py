"""The InferenceDeployment resource's identity (group, version, names) and its top-level rules."""

from __future__ import annotations

from typing import Final

GROUP: Final = "berth.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "InferenceDeployment"
PLURAL: Final = "inferencedeployments"
SINGULAR: Final = "inferencedeployment"
SHORT_NAMES: Final = ("idep",)
CATEGORIES: Final = ("berth",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# The name becomes a Service name and a label value: an RFC 1035 label of at most 63 characters.
NAME_MAX_LENGTH: Final = 63
NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_RULE_MESSAGE: Final = (
    "metadata.name must be an RFC 1035 label (lowercase letters, digits and '-', starting with a "
    f"letter) of at most {NAME_MAX_LENGTH} characters: it names the Service"
)
