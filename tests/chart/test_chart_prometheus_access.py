"""The chart's operator.prometheus values reach the operator's settings for its default Prometheus: a
token or basic auth from files (a Secret the chart mounts read-only at /etc/berth/prometheus), a CA,
TLS options and extra headers; contradictions fail the render with a message naming the values."""

from __future__ import annotations

from typing import Any

import pytest

from berth_operator.settings import OperatorSettings

from .conftest import Chart, HelmError

URL = "https://thanos-querier.openshift-monitoring.svc:9091"


def _container_and_volumes(chart: Chart, prometheus: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    values = {"operator": {"prometheusUrl": URL, "prometheus": prometheus}}
    pod = chart.render(values).only("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, pod["volumes"]


def _settings(container: dict[str, Any]) -> OperatorSettings:
    return OperatorSettings.from_environment(
        {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    )


def test_token_ca_and_headers_reach_the_settings_and_the_secret_is_mounted(chart: Chart) -> None:
    container, volumes = _container_and_volumes(
        chart,
        {
            "secretName": "prometheus-access",
            "bearerTokenFile": "/etc/berth/prometheus/token",
            "caFile": "/etc/berth/prometheus/ca.crt",
            "serverName": "thanos-querier.openshift-monitoring.svc",
            "headers": {"X-Scope-OrgID": "team-a"},
        },
    )
    settings = _settings(container)
    assert settings.prometheus_url == URL
    assert settings.prometheus_bearer_token_file == "/etc/berth/prometheus/token"
    assert settings.prometheus_ca_file == "/etc/berth/prometheus/ca.crt"
    assert settings.prometheus_server_name == "thanos-querier.openshift-monitoring.svc"
    assert settings.prometheus_headers == (("X-Scope-OrgID", "team-a"),)
    assert settings.prometheus_basic_auth_username is None
    assert {"name": "prometheus-credentials", "secret": {"secretName": "prometheus-access"}} in volumes
    assert {
        "name": "prometheus-credentials",
        "mountPath": "/etc/berth/prometheus",
        "readOnly": True,
    } in container["volumeMounts"]


def test_basic_auth_and_insecure_skip_verify_reach_the_settings(chart: Chart) -> None:
    container, volumes = _container_and_volumes(
        chart,
        {
            "basicAuth": {"username": "grafana", "passwordFile": "/etc/berth/prometheus/password"},
            "insecureSkipVerify": True,
        },
    )
    settings = _settings(container)
    assert settings.prometheus_basic_auth_username == "grafana"
    assert settings.prometheus_basic_auth_password_file == "/etc/berth/prometheus/password"
    assert settings.prometheus_insecure_skip_verify is True
    assert [volume["name"] for volume in volumes] == ["tmp"]  # no Secret named: nothing mounted


@pytest.mark.parametrize(
    ("prometheus", "message"),
    [
        (
            {"bearerTokenFile": "/t", "basicAuth": {"username": "u", "passwordFile": "/p"}},
            "set bearerTokenFile or basicAuth, not both",
        ),
        ({"basicAuth": {"username": "u"}}, "username and passwordFile go together"),
        ({"caFile": "/ca.crt", "insecureSkipVerify": True}, "insecureSkipVerify checks no certificate"),
    ],
)
def test_contradictory_prometheus_values_fail_the_render(
    chart: Chart, prometheus: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError, match=message):
        chart.render({"operator": {"prometheusUrl": URL, "prometheus": prometheus}})


def test_an_unknown_prometheus_value_is_refused_by_the_schema(chart: Chart) -> None:
    with pytest.raises(HelmError, match="tokenFile"):
        chart.render({"operator": {"prometheus": {"tokenFile": "/t"}}})
