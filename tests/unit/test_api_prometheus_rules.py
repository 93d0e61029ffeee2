"""spec.autoscaling.prometheus: credentials, TLS and headers are accepted in their documented shapes
and refused, with a message naming the field, where they contradict each other; the CRD carries each
rule as CEL (its API-server side is in tests/integration/test_crd.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentSpec, PrometheusSpec
from berth_operator.crd import build_crd

BASE: dict[str, Any] = {"model": {"name": "chat", "source": "hf://Qwen/Qwen2.5-7B-Instruct"}}


def _spec(prometheus: dict[str, Any]) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate({**BASE, "autoscaling": {"prometheus": prometheus}})


def test_the_documented_shapes_are_accepted_with_their_default_keys() -> None:
    token = _spec({"url": "https://thanos:9091", "bearerTokenSecretRef": {"name": "prom-token"}})
    assert token.autoscaling.prometheus.bearer_token_secret_ref is not None
    assert token.autoscaling.prometheus.bearer_token_secret_ref.key == "token"

    basic = _spec(
        {
            "url": "https://prometheus-prod.grafana.net/api/prom",
            "basicAuth": {"username": "123456", "passwordSecretRef": {"name": "grafana-cloud"}},
            "headers": {"X-Scope-OrgID": "team-a"},
        }
    ).autoscaling.prometheus
    assert basic.basic_auth is not None and basic.basic_auth.password_secret_ref.key == "password"
    from_secret = _spec(
        {"basicAuth": {"usernameSecretRef": {"name": "b"}, "passwordSecretRef": {"name": "b"}}}
    ).autoscaling.prometheus.basic_auth
    assert from_secret is not None and from_secret.username_secret_ref is not None
    assert from_secret.username_secret_ref.key == "username"

    tls = _spec(
        {"url": "https://10.0.0.7:9091", "tls": {"caSecretRef": {"name": "ca"}, "serverName": "thanos.svc"}}
    ).autoscaling.prometheus.tls
    assert tls is not None and tls.ca_secret_ref is not None and tls.ca_secret_ref.key == "ca.crt"
    assert tls.insecure_skip_verify is False

    operator_files = _spec(
        {
            "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "tls": {"caFile": "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt"},
        }
    ).autoscaling.prometheus
    assert operator_files.bearer_token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_an_unset_prometheus_section_stays_empty_on_the_wire() -> None:
    assert InferenceDeploymentSpec.model_validate(BASE).to_wire()["autoscaling"]["prometheus"] == {}


@pytest.mark.parametrize(
    ("prometheus", "expected"),
    [
        (
            {"bearerTokenFile": "/t", "bearerTokenSecretRef": {"name": "t"}},
            "at most one of bearerTokenSecretRef, bearerTokenFile and basicAuth",
        ),
        (
            {
                "bearerTokenSecretRef": {"name": "t"},
                "basicAuth": {"username": "u", "passwordSecretRef": {"name": "p"}},
            },
            "at most one of bearerTokenSecretRef, bearerTokenFile and basicAuth",
        ),
        (
            {
                "url": "https://attacker.example",
                "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            },
            "bearerTokenFile is a file of the operator's",
        ),
        ({"bearerTokenFile": "token"}, "bearerTokenFile"),  # not an absolute path
        (
            {"basicAuth": {"passwordSecretRef": {"name": "p"}}},
            "exactly one of username and usernameSecretRef",
        ),
        (
            {
                "basicAuth": {
                    "username": "u",
                    "usernameSecretRef": {"name": "u"},
                    "passwordSecretRef": {"name": "p"},
                }
            },
            "exactly one of username and usernameSecretRef",
        ),
        ({"basicAuth": {"username": "u"}}, "passwordSecretRef"),
        ({"basicAuth": {"username": "a:b", "passwordSecretRef": {"name": "p"}}}, "basicAuth.username"),
        ({"url": "http://prometheus:9090", "tls": {"insecureSkipVerify": True}}, "tls needs an https:// url"),
        ({"tls": {"caFile": "/ca.crt", "caSecretRef": {"name": "ca"}}}, "caSecretRef or caFile, not both"),
        (
            {"tls": {"caFile": "/ca.crt", "insecureSkipVerify": True}},
            "insecureSkipVerify checks no certificate",
        ),
        ({"tls": {"serverName": "Not A Name"}}, "tls.serverName"),
        ({"headers": {"X Scope": "a"}}, "each name must be 1-128 letters"),
        ({"headers": {"X-Scope-OrgID": "a\r\nX-Injected: 1"}}, "headers.X-Scope-OrgID"),
        ({"headers": {f"X-{n}": "v" for n in range(17)}}, "headers"),
        (
            {"bearerTokenSecretRef": {"name": "t"}, "headers": {"AUTHORIZATION": "Bearer other"}},
            "may not set Authorization beside",
        ),
    ],
)
def test_contradictions_are_refused_naming_the_field(prometheus: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _spec(prometheus)
    assert expected in str(refused.value)


def test_an_authorization_header_alone_is_the_specs_own_credentials() -> None:
    alone = PrometheusSpec.model_validate({"headers": {"Authorization": "Bearer abc"}})
    assert alone.sets_credentials()
    assert not PrometheusSpec.model_validate({"headers": {"X-Scope-OrgID": "a"}}).sets_credentials()


def _prometheus_schema() -> dict[str, Any]:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(spec["properties"]["autoscaling"]["properties"]["prometheus"])


def test_the_crd_carries_every_rule_as_cel() -> None:
    schema = _prometheus_schema()
    rules = {rule["message"]: rule["rule"] for rule in schema["x-kubernetes-validations"]}
    assert len(rules) == len(PrometheusSpec.cross_field_rules)
    assert any("lowerAscii() != 'authorization'" in rule for rule in rules.values())
    basic_rules = schema["properties"]["basicAuth"]["x-kubernetes-validations"]
    assert basic_rules[0]["rule"] == "has(self.username) != has(self.usernameSecretRef)"
    assert len(schema["properties"]["tls"]["x-kubernetes-validations"]) == 2
    assert schema["properties"]["headers"]["maxProperties"] == 16
    assert "operator's own filesystem" in schema["properties"]["bearerTokenFile"]["description"]
