"""spec.cost and the operator's prices: validated where they are written, and never a cause to restart
a pod (the revision hash ignores spec.cost, so does the Deployment's pod template)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.builders import BuildContext, Owner
from berth_operator.builders.configmap import config_map_name
from berth_operator.builders.deployment import build_deployment
from berth_operator.builders.labels import revision_hash
from berth_operator.settings import OperatorSettings

SPEC: dict[str, Any] = {
    "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc123"},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
}


def _context(cost: dict[str, Any] | None) -> BuildContext:
    spec = InferenceDeploymentSpec.model_validate({**SPEC, **({"cost": cost} if cost is not None else {})})
    return BuildContext(
        owner=Owner("chat", "ml", "uid"), spec=spec, replicas=1, default_runtime_image="registry/runtime:1"
    )


@pytest.mark.parametrize(
    "cost", [{"gpuHourlyPrice": 2.49}, {"gpuHourlyPrice": 9.0, "currency": "EUR"}, {"currency": "credits"}]
)
def test_a_price_change_restarts_no_pod(cost: dict[str, Any]) -> None:
    unpriced, priced = _context(None), _context(cost)
    assert revision_hash(priced) == revision_hash(unpriced)
    template = build_deployment(priced, config_map_name("chat"))["spec"]["template"]
    assert template == build_deployment(unpriced, config_map_name("chat"))["spec"]["template"]


def test_cost_defaults_to_no_price() -> None:
    spec = InferenceDeploymentSpec.model_validate(SPEC)
    assert spec.cost.gpu_hourly_price is None and spec.cost.currency is None
    assert spec.to_wire()["cost"] == {}


@pytest.mark.parametrize(
    ("cost", "field"),
    [
        ({"gpuHourlyPrice": -1}, "gpuHourlyPrice"),
        ({"gpuHourlyPrice": 2_000_000}, "gpuHourlyPrice"),
        ({"currency": ""}, "currency"),
        ({"currency": "US$"}, "currency"),
        ({"pricePerHour": 2.0}, "pricePerHour"),
    ],
)
def test_bad_cost_is_refused(cost: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        InferenceDeploymentSpec.model_validate({**SPEC, "cost": cost})


def test_operator_prices_are_parsed_per_product() -> None:
    settings = OperatorSettings.from_environment(
        {
            "BERTH_GPU_HOURLY_PRICES": '{"NVIDIA-H100-80GB-HBM3": 2.49, "NVIDIA-A100-SXM4-80GB": 1}',
            "BERTH_GPU_PRICE_CURRENCY": "USD",
        }
    )
    assert settings.gpu_hourly_price("NVIDIA-H100-80GB-HBM3") == 2.49
    assert settings.gpu_hourly_price("NVIDIA-A100-SXM4-80GB") == 1.0
    assert settings.gpu_hourly_price("NVIDIA-L4") is None
    assert settings.gpu_price_currency == "USD"
    defaults = OperatorSettings.from_environment({})
    assert defaults.gpu_hourly_prices == () and defaults.gpu_price_currency is None
    hash(settings)  # still a value: hashable, comparable


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BERTH_GPU_HOURLY_PRICES", "2.49", "BERTH_GPU_HOURLY_PRICES='2.49': expected a JSON object"),
        ("BERTH_GPU_HOURLY_PRICES", "{H100: 2}", "not JSON"),
        ("BERTH_GPU_HOURLY_PRICES", '{"NVIDIA-L4": -1}', "price -1 for 'NVIDIA-L4' must be a number from 0"),
        ("BERTH_GPU_HOURLY_PRICES", '{"NVIDIA-L4": "cheap"}', "price 'cheap' for 'NVIDIA-L4'"),
        ("BERTH_GPU_HOURLY_PRICES", '{"NVIDIA-L4": true}', "price True for 'NVIDIA-L4'"),
        ("BERTH_GPU_HOURLY_PRICES", '{" ": 1}', "an empty GPU product name"),
        ("BERTH_GPU_PRICE_CURRENCY", "US dollars", "expected a short label such as USD"),
    ],
)
def test_bad_operator_prices_name_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        OperatorSettings.from_environment({variable: value})
