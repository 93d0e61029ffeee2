"""Fixtures of the autoscaler's handler tests: the in-memory API, a settable clock, the operator's
context over both, and a Prometheus stand-in on a real local socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from handler_support import Clock
from prometheus_client import CollectorRegistry
from prometheus_stub import PrometheusStub, serve_prometheus_stub

from berth_operator.handlers.context import OperatorContext
from berth_operator.kube import InMemoryKubeApi
from berth_operator.metrics import OperatorMetrics
from berth_operator.settings import OperatorSettings


@pytest.fixture
def stub() -> Iterator[PrometheusStub]:
    with serve_prometheus_stub() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api() -> InMemoryKubeApi:
    return InMemoryKubeApi()


@pytest.fixture
def context(api: InMemoryKubeApi, clock: Clock) -> OperatorContext:
    return OperatorContext(
        api=api, settings=OperatorSettings(), metrics=OperatorMetrics(CollectorRegistry()), clock=clock
    )
