"""An OperatorContext over an InMemoryKubeApi, and a factory for InferenceDeployment objects."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from berth_operator.handlers.context import OperatorContext
from berth_operator.kube import InMemoryKubeApi
from berth_operator.metrics import OperatorMetrics
from berth_operator.settings import OperatorSettings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def api() -> InMemoryKubeApi:
    return InMemoryKubeApi()


@pytest.fixture
def settings() -> OperatorSettings:
    return OperatorSettings(runtime_image="registry.example/berth-runtime:test")


@pytest.fixture
def context(api: InMemoryKubeApi, settings: OperatorSettings) -> OperatorContext:
    return OperatorContext(
        api=api, settings=settings, metrics=OperatorMetrics(CollectorRegistry()), clock=lambda: NOW
    )


InferenceDeploymentFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def inference_deployment(api: InMemoryKubeApi) -> InferenceDeploymentFactory:
    """Stores an InferenceDeployment `chat` in namespace `ml` (as `kubectl apply` would) and returns it."""

    def create(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "berth.dev/v1alpha1",
            "kind": "InferenceDeployment",
            "metadata": {"name": "chat", "namespace": "ml", "uid": "uid-chat", "generation": 1},
            "spec": spec
            or {
                "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc"},
                "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
            },
        }
        if status is not None:
            body["status"] = status
        return api.put(body)

    return create
