"""The operator's settings for its default Prometheus (BERTH_PROMETHEUS_*): parsed with their units and
defaults, and contradictions refused at start with the variable named -- and never a header's value,
which may be a credential."""

from __future__ import annotations

import pytest

from berth_operator.settings import OperatorSettings

URL = "https://thanos-querier.openshift-monitoring.svc:9091"


def test_defaults_are_no_credentials_and_the_system_trust() -> None:
    settings = OperatorSettings.from_environment({"BERTH_PROMETHEUS_URL": URL})
    assert settings.prometheus_bearer_token_file is None
    assert settings.prometheus_basic_auth_username is None
    assert settings.prometheus_ca_file is None
    assert settings.prometheus_insecure_skip_verify is False
    assert settings.prometheus_server_name is None
    assert settings.prometheus_headers == ()


def test_every_variable_is_read() -> None:
    token = OperatorSettings.from_environment(
        {
            "BERTH_PROMETHEUS_URL": URL,
            "BERTH_PROMETHEUS_BEARER_TOKEN_FILE": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "BERTH_PROMETHEUS_CA_FILE": "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt",
            "BERTH_PROMETHEUS_SERVER_NAME": "thanos-querier.openshift-monitoring.svc",
            "BERTH_PROMETHEUS_HEADERS": '{"X-Team": "ml", "X-Scope-OrgID": "team-a"}',
        }
    )
    assert token.prometheus_bearer_token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert token.prometheus_ca_file == "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt"
    assert token.prometheus_server_name == "thanos-querier.openshift-monitoring.svc"
    assert token.prometheus_headers == (("X-Scope-OrgID", "team-a"), ("X-Team", "ml"))
    basic = OperatorSettings.from_environment(
        {
            "BERTH_PROMETHEUS_URL": URL,
            "BERTH_PROMETHEUS_BASIC_AUTH_USERNAME": "grafana",
            "BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE": "/etc/berth/prometheus/password",
            "BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY": "true",
        }
    )
    assert basic.prometheus_basic_auth_username == "grafana"
    assert basic.prometheus_basic_auth_password_file == "/etc/berth/prometheus/password"
    assert basic.prometheus_insecure_skip_verify is True


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            {"BERTH_PROMETHEUS_BEARER_TOKEN_FILE": "token"},
            "BERTH_PROMETHEUS_BEARER_TOKEN_FILE='token': expected an absolute path",
        ),
        ({"BERTH_PROMETHEUS_HEADERS": "X-Team: ml"}, "BERTH_PROMETHEUS_HEADERS: not JSON"),
        ({"BERTH_PROMETHEUS_HEADERS": '["X-Team"]'}, "expected a JSON object"),
        ({"BERTH_PROMETHEUS_HEADERS": '{"X Team": "ml"}'}, "header name 'X Team'"),
        ({"BERTH_PROMETHEUS_HEADERS": '{"X-Team": 7}'}, "the value of header 'X-Team'"),
        ({"BERTH_PROMETHEUS_BASIC_AUTH_USERNAME": "grafana"}, "go together"),
        ({"BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE": "/p"}, "go together"),
        (
            {
                "BERTH_PROMETHEUS_BASIC_AUTH_USERNAME": "a:b",
                "BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE": "/p",
            },
            "cannot contain ':'",
        ),
        (
            {
                "BERTH_PROMETHEUS_BEARER_TOKEN_FILE": "/t",
                "BERTH_PROMETHEUS_BASIC_AUTH_USERNAME": "u",
                "BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE": "/p",
            },
            "set one kind of credentials",
        ),
        (
            {
                "BERTH_PROMETHEUS_BEARER_TOKEN_FILE": "/t",
                "BERTH_PROMETHEUS_HEADERS": '{"authorization": "x"}',
            },
            "BERTH_PROMETHEUS_HEADERS may not set Authorization",
        ),
        (
            {"BERTH_PROMETHEUS_CA_FILE": "/ca.crt", "BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY": "true"},
            "checks no certificate",
        ),
        (
            {"BERTH_PROMETHEUS_URL": "http://prometheus:9090", "BERTH_PROMETHEUS_CA_FILE": "/ca.crt"},
            "need an https:// BERTH_PROMETHEUS_URL, not 'http://prometheus:9090'",
        ),
        (
            {"BERTH_PROMETHEUS_URL": "", "BERTH_PROMETHEUS_BEARER_TOKEN_FILE": "/t"},
            "BEARER_TOKEN_FILE: for the default Prometheus, but BERTH_PROMETHEUS_URL is unset",
        ),
    ],
)
def test_bad_settings_stop_the_operator_naming_the_variable(
    environment: dict[str, str], expected: str
) -> None:
    with pytest.raises(ValueError) as refused:
        OperatorSettings.from_environment({"BERTH_PROMETHEUS_URL": URL, **environment})
    assert expected in str(refused.value)


def test_a_bad_header_value_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as refused:
        OperatorSettings.from_environment(
            {"BERTH_PROMETHEUS_URL": URL, "BERTH_PROMETHEUS_HEADERS": '{"X-Api-Key": "secret\\nX-Evil: 1"}'}
        )
    assert "X-Api-Key" in str(refused.value)
    assert "secret" not in str(refused.value)
