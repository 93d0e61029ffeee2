"""The model families this runtime serves, keyed by the `architectures` name in config.json: the one
place a new family is added (its module defines a `ModelFamily`; list it here). An architecture not
listed fails at start-up with the list of the supported ones.
"""

from __future__ import annotations

from pathlib import Path

from berth_runtime.models import gemma, llama, mixtral, phi3, qwen3, qwen_moe
from berth_runtime.models.interface import ModelFamily
from berth_runtime.models.model_config import UnsupportedArchitectureError

FAMILIES: tuple[ModelFamily, ...] = (
    llama.FAMILY,
    qwen3.FAMILY,
    phi3.FAMILY,
    gemma.FAMILY,
    mixtral.FAMILY,
    qwen_moe.FAMILY,
)

ARCHITECTURES: dict[str, ModelFamily] = {
    architecture: family for family in FAMILIES for architecture in family.architectures
}

SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)


def family_for(architecture: object, path: Path) -> ModelFamily:
    """The family serving `architecture` (config.json's first `architectures` entry, read from `path`)."""
    family = ARCHITECTURES.get(architecture) if isinstance(architecture, str) else None
    if family is None:
        raise UnsupportedArchitectureError(
            f"{path}: architecture {architecture!r} is not supported by this runtime; "
            f"accepted: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return family
