"""The chart's GPU prices reach the operator: operator.gpuHourlyPrices renders as the JSON object
BERTH_GPU_HOURLY_PRICES the operator parses, and the values schema refuses a negative price."""

from __future__ import annotations

import pytest

from berth_operator.settings import OperatorSettings

from .conftest import Chart, HelmError


def _settings(chart: Chart, operator_values: dict[str, object]) -> OperatorSettings:
    (container,) = chart.render({"operator": operator_values}).only("Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    environment = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    return OperatorSettings.from_environment(environment)


def test_prices_and_currency_reach_the_operator(chart: Chart) -> None:
    settings = _settings(
        chart,
        {"gpuHourlyPrices": {"NVIDIA-H100-80GB-HBM3": 2.49, "NVIDIA-L4": 1}, "gpuPriceCurrency": "EUR"},
    )
    assert settings.gpu_hourly_price("NVIDIA-H100-80GB-HBM3") == 2.49
    assert settings.gpu_hourly_price("NVIDIA-L4") == 1.0
    assert settings.gpu_price_currency == "EUR"


def test_no_prices_by_default(chart: Chart) -> None:
    settings = _settings(chart, {})
    assert settings.gpu_hourly_prices == () and settings.gpu_price_currency is None


@pytest.mark.parametrize(
    "operator_values",
    [
        {"gpuHourlyPrices": {"NVIDIA-L4": -1}},
        {"gpuHourlyPrices": {"NVIDIA-L4": "cheap"}},
        {"gpuPriceCurrency": "US $"},
    ],
)
def test_the_schema_refuses_bad_prices(chart: Chart, operator_values: dict[str, object]) -> None:
    with pytest.raises(HelmError):
        chart.render({"operator": operator_values})
