"""Spec and context factories shared by the builder tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.builders import BuildContext, Owner

BASE_SPEC: dict[str, Any] = {
    "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc123"},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}, "cpu": "8", "memory": "64Gi"},
}
OWNER = Owner(name="chat", namespace="ml", uid="0000-1111")
DEFAULT_IMAGE = "registry.example/berth-runtime:test"

ContextFactory = Callable[..., BuildContext]


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_context(overrides: dict[str, Any] | None = None, replicas: int = 1) -> BuildContext:
    spec = InferenceDeploymentSpec.model_validate(merge(BASE_SPEC, overrides or {}))
    return BuildContext(owner=OWNER, spec=spec, replicas=replicas, default_runtime_image=DEFAULT_IMAGE)


@pytest.fixture
def make_context() -> ContextFactory:
    """`make_context(overrides, replicas=1)`: a BuildContext for BASE_SPEC deep-merged with overrides."""
    return build_context
