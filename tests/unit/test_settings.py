"""Operator settings from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import re

import pytest

from berth_operator.settings import DEFAULT_RUNTIME_IMAGE, OperatorSettings


def test_defaults() -> None:
    settings = OperatorSettings.from_environment({})
    assert settings == OperatorSettings()
    assert settings.watch_namespaces == ()
    assert settings.runtime_image == DEFAULT_RUNTIME_IMAGE
    assert settings.peering_name is None
    assert (settings.health_port, settings.metrics_port, settings.metrics_enabled) == (8080, 9090, True)


def test_values_are_parsed() -> None:
    settings = OperatorSettings.from_environment(
        {
            "BERTH_WATCH_NAMESPACES": "ml, serving,,",
            "BERTH_GPU_PRODUCTS": "NVIDIA-H100-80GB-HBM3,NVIDIA-A100-SXM4-80GB",
            "BERTH_RUNTIME_IMAGE": "registry.example/runtime:1",
            "BERTH_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
            "BERTH_HEALTH_PORT": "0",
            "BERTH_METRICS_ENABLED": "false",
            "BERTH_METRICS_PORT": "9100",
            "BERTH_PEERING_NAME": "berth",
            "BERTH_LOG_LEVEL": "debug",
            "BERTH_MISSING_SECRET_RETRY_SECONDS": "5",
            "BERTH_API_CONCURRENCY": "64",
        }
    )
    assert settings.watch_namespaces == ("ml", "serving")
    assert settings.gpu_products == ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB")
    assert settings.runtime_image == "registry.example/runtime:1"
    assert settings.prometheus_url == "http://prometheus.monitoring:9090"
    assert (settings.health_port, settings.metrics_enabled, settings.metrics_port) == (0, False, 9100)
    assert settings.peering_name == "berth"
    assert settings.log_level == "DEBUG"
    assert settings.missing_secret_retry_seconds == 5.0
    assert settings.api_concurrency == 64


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BERTH_HEALTH_PORT", "http", "BERTH_HEALTH_PORT='http': expected a port number"),
        ("BERTH_METRICS_PORT", "70000", "BERTH_METRICS_PORT='70000'"),
        ("BERTH_METRICS_ENABLED", "maybe", "expected true or false"),
        ("BERTH_LOG_LEVEL", "loud", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ("BERTH_PROMETHEUS_URL", "prometheus:9090", "expected an http:// or https:// URL"),
        ("BERTH_MISSING_SECRET_RETRY_SECONDS", "-1", "expected a positive number of seconds"),
        ("BERTH_API_CONCURRENCY", "0", "BERTH_API_CONCURRENCY='0': expected a whole number from 1 to 256"),
        ("BERTH_API_CONCURRENCY", "many", "expected a whole number from 1 to 256"),
        ("BERTH_API_CONCURRENCY", "1000", "expected a whole number from 1 to 256"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        OperatorSettings.from_environment({variable: value})
