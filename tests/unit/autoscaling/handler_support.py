"""What the autoscaler's handler tests share: the resource as the reconcile left it, its
Deployment, a settable clock, and the answers of a Prometheus stand-in to the signal queries (the
fixtures that make them are in conftest.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_stub import PrometheusStub, answer_signals

from berth_operator.autoscaling.signals import SeriesSelector, signal_queries
from berth_operator.builders import BuildContext
from berth_operator.builders.children import stamp_applied_hash
from berth_operator.builders.configmap import config_map_name
from berth_operator.builders.deployment import build_deployment
from berth_operator.handlers.observed import observe
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, INFERENCE_DEPLOYMENT
from berth_operator.settings import OperatorSettings

START = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


ACCEPTED = {
    "type": "Accepted",
    "status": "True",
    "reason": "Applied",
    "message": "revision abc applied",
    "lastTransitionTime": "2027-01-15T07:00:00Z",
    "observedGeneration": 1,
}


def store(
    api: InMemoryKubeApi,
    prometheus_url: str | None,
    *,
    replicas: int = 1,
    cold_start: dict[str, Any] | None = None,
    serving: dict[str, Any] | None = None,
    **autoscaling: Any,
) -> None:
    """The resource as the operator's reconcile left it (spec accepted, its Deployment applied), with
    `cold_start` as its status sync measured it, and `serving` as its spec.serving, if given."""
    spec_autoscaling: dict[str, Any] = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 6,
        "slo": {"timeToFirstTokenP95Milliseconds": 500, "interTokenLatencyP95Milliseconds": 50},
        "intervalSeconds": 10,
        "scaleUpStabilizationSeconds": 0,
        **autoscaling,
    }
    if prometheus_url is not None:
        spec_autoscaling["prometheus"] = {"url": prometheus_url}
    owner = api.put(
        {
            "apiVersion": "berth.dev/v1alpha1",
            "kind": "InferenceDeployment",
            "metadata": {"name": "chat", "namespace": "ml", "uid": "uid-chat", "generation": 1},
            "spec": {
                "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc"},
                "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
                "replicas": replicas,
                "autoscaling": spec_autoscaling,
                **({"serving": serving} if serving is not None else {}),
            },
            "status": {
                "observedGeneration": 1,
                "conditions": [ACCEPTED],
                **({"coldStart": cold_start} if cold_start is not None else {}),
            },
        }
    )
    build = observe(owner, OperatorSettings()).build
    assert isinstance(build, BuildContext)
    deployment = stamp_applied_hash(build_deployment(build, config_map_name("chat")))
    api.put({**deployment, "status": {"readyReplicas": replicas}})


def set_deployment(api: InMemoryKubeApi, replicas: int, ready: int | None = None) -> None:
    """The Deployment at `replicas` (as `kubectl scale deployment` would set it), `ready` of them Ready."""
    deployment = api.stored(DEPLOYMENT, "ml", "chat")
    assert deployment is not None
    deployment["spec"]["replicas"] = replicas
    deployment["status"] = {"readyReplicas": replicas if ready is None else ready}
    api.put(deployment)


def deployment_replicas(api: InMemoryKubeApi) -> int:
    deployment = api.stored(DEPLOYMENT, "ml", "chat")
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def resource_status(api: InMemoryKubeApi) -> dict[str, Any]:
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    return dict(stored["status"])


def answer(stub: PrometheusStub, values: Mapping[str, float | str | None]) -> None:
    answer_signals(stub, signal_queries(SeriesSelector("ml", "chat"), 60), values)
