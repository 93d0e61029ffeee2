"""Resolving an InferenceDeployment's Prometheus access on the in-memory API: the spec over the
operator's settings, credentials from Secrets of the resource's namespace, and a reason to put in
status -- never an exception -- when a Secret is missing, lacks its key, or may not be read."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.autoscaling.connection import BasicAuth, BearerToken, PrometheusAccess
from berth_operator.autoscaling.prometheus import PrometheusClient
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.prometheus_access import (
    NO_PROMETHEUS,
    PrometheusAccessUnavailable,
    prometheus_access,
)
from berth_operator.kube import InMemoryKubeApi, KubeApiError
from berth_operator.settings import OperatorSettings
from tests.recording_server import serve_recording

NAMESPACE = "ml"
DEFAULT_URL = "https://prometheus.monitoring.svc:9091"
OPERATOR_SETTINGS = OperatorSettings(
    prometheus_url=DEFAULT_URL,
    prometheus_bearer_token_file="/var/run/secrets/kubernetes.io/serviceaccount/token",
    prometheus_ca_file="/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt",
    prometheus_headers=(("X-Scope-OrgID", "platform"), ("X-Team", "ml")),
)


def _spec(prometheus: dict[str, Any]) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(
        {"model": {"name": "chat", "source": "hf://org/chat"}, "autoscaling": {"prometheus": prometheus}}
    )


def _secret(api: InMemoryKubeApi, name: str, data: dict[str, bytes], namespace: str = NAMESPACE) -> None:
    api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
    )


def _with(context: OperatorContext, settings: OperatorSettings) -> OperatorContext:
    return replace(context, settings=settings)


async def _resolve(context: OperatorContext, prometheus: dict[str, Any]) -> PrometheusAccess:
    access = await prometheus_access(context, NAMESPACE, _spec(prometheus))
    assert isinstance(access, PrometheusAccess), access
    return access


async def _reason(context: OperatorContext, prometheus: dict[str, Any]) -> str:
    access = await prometheus_access(context, NAMESPACE, _spec(prometheus))
    assert isinstance(access, PrometheusAccessUnavailable), access
    return access.message


async def test_no_prometheus_anywhere_is_a_reason_naming_both_settings(context: OperatorContext) -> None:
    assert await prometheus_access(context, NAMESPACE, _spec({})) == PrometheusAccessUnavailable(
        NO_PROMETHEUS, no_prometheus=True
    )
    assert "spec.autoscaling.prometheus.url" in NO_PROMETHEUS and "BERTH_PROMETHEUS_URL" in NO_PROMETHEUS


async def test_a_spec_url_uses_only_the_specs_settings(
    api: InMemoryKubeApi, context: OperatorContext
) -> None:
    _secret(api, "thanos", {"token": b"tenant-token\n"})
    access = await _resolve(
        _with(context, OPERATOR_SETTINGS),
        {
            "url": "https://thanos.example:9091",
            "bearerTokenSecretRef": {"name": "thanos"},
            "headers": {"X-Scope-OrgID": "team-a"},
        },
    )
    assert access.url == "https://thanos.example:9091"
    assert access.auth == BearerToken(
        setting="spec.autoscaling.prometheus.bearerTokenSecretRef (Secret 'thanos', key 'token')",
        token="tenant-token\n",
    )
    assert access.headers == (("X-Scope-OrgID", "team-a"),)  # not the operator's X-Team
    assert access.tls.ca_file is None  # not the operator's CA either
    assert access.settings.url == "spec.autoscaling.prometheus.url"


async def test_a_spec_url_without_credentials_never_gets_the_operators(context: OperatorContext) -> None:
    access = await _resolve(_with(context, OPERATOR_SETTINGS), {"url": "https://elsewhere.example"})
    assert access.auth is None and access.headers == ()


async def test_the_default_prometheus_uses_the_operators_settings(context: OperatorContext) -> None:
    access = await _resolve(_with(context, OPERATOR_SETTINGS), {})
    assert access.url == DEFAULT_URL
    assert access.auth == BearerToken(
        setting="the operator's BERTH_PROMETHEUS_BEARER_TOKEN_FILE",
        file="/var/run/secrets/kubernetes.io/serviceaccount/token",
    )
    assert access.tls.ca_file == "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt"
    assert access.headers == (("X-Scope-OrgID", "platform"), ("X-Team", "ml"))
    assert "BERTH_PROMETHEUS_CA_FILE" in access.settings.ca


async def test_on_the_default_prometheus_spec_parts_replace_the_operators(
    api: InMemoryKubeApi, context: OperatorContext
) -> None:
    _secret(api, "grafana", {"username": b"123456", "password": b"glc_password\n"})
    _secret(api, "ca", {"ca.crt": b"-----BEGIN CERTIFICATE-----\n..."})
    access = await _resolve(
        _with(context, OPERATOR_SETTINGS),
        {
            "basicAuth": {"usernameSecretRef": {"name": "grafana"}, "passwordSecretRef": {"name": "grafana"}},
            "tls": {"caSecretRef": {"name": "ca"}, "serverName": "prometheus.monitoring.svc"},
            "headers": {"x-scope-orgid": "team-a"},
        },
    )
    assert access.auth == BasicAuth(
        setting="spec.autoscaling.prometheus.basicAuth (Secret 'grafana', key 'password')",
        username="123456",
        password="glc_password",
    )
    assert access.tls.ca_pem == "-----BEGIN CERTIFICATE-----\n..." and access.tls.ca_file is None
    assert access.tls.server_name == "prometheus.monitoring.svc"
    # The spec's header replaces the operator's of the same name, whatever its case; the rest stay.
    assert access.headers == (("X-Team", "ml"), ("x-scope-orgid", "team-a"))
    reads = [write for write in api.writes]
    assert reads == []  # resolving never writes


async def test_a_specs_authorization_header_replaces_the_operators_credentials(
    context: OperatorContext,
) -> None:
    access = await _resolve(_with(context, OPERATOR_SETTINGS), {"headers": {"Authorization": "Bearer mine"}})
    assert access.auth is None
    assert ("Authorization", "Bearer mine") in access.headers


@pytest.mark.parametrize(
    ("secrets", "prometheus", "expected"),
    [
        (
            {},
            {"url": "https://p", "bearerTokenSecretRef": {"name": "prom-token"}},
            "prometheus.bearerTokenSecretRef: Secret 'prom-token' not found in namespace 'ml'",
        ),
        (
            {"prom-token": {"bearer": b"x", "ca.crt": b"y"}},
            {"url": "https://p", "bearerTokenSecretRef": {"name": "prom-token"}},
            "Secret 'prom-token' has no key 'token' (it has 'bearer', 'ca.crt')",
        ),
        (
            {"prom-token": {"token": b" \n"}},
            {"url": "https://p", "bearerTokenSecretRef": {"name": "prom-token"}},
            "key 'token' of Secret 'prom-token' is empty",
        ),
        (
            {"creds": {"password": b"\xff\xfe"}},
            {"url": "https://p", "basicAuth": {"username": "u", "passwordSecretRef": {"name": "creds"}}},
            "basicAuth.passwordSecretRef: key 'password' of Secret 'creds' is not UTF-8 text",
        ),
        (
            {"creds": {"password": b"p"}},
            {
                "url": "https://p",
                "basicAuth": {"usernameSecretRef": {"name": "creds"}, "passwordSecretRef": {"name": "creds"}},
            },
            "basicAuth.usernameSecretRef: Secret 'creds' has no key 'username' (it has 'password')",
        ),
        (
            {},
            {"url": "https://p", "tls": {"caSecretRef": {"name": "prom-ca", "key": "bundle.pem"}}},
            "spec.autoscaling.prometheus.tls.caSecretRef: Secret 'prom-ca' not found",
        ),
    ],
)
async def test_unusable_secrets_are_reasons_naming_field_secret_and_key(
    api: InMemoryKubeApi,
    context: OperatorContext,
    secrets: dict[str, dict[str, bytes]],
    prometheus: dict[str, Any],
    expected: str,
) -> None:
    for name, data in secrets.items():
        _secret(api, name, data)
    assert expected in await _reason(context, prometheus)


async def test_a_secret_of_another_namespace_is_not_used(
    api: InMemoryKubeApi, context: OperatorContext
) -> None:
    _secret(api, "prom-token", {"token": b"t"}, namespace="other")
    reason = await _reason(context, {"url": "https://p", "bearerTokenSecretRef": {"name": "prom-token"}})
    assert "not found in namespace 'ml'" in reason
    unavailable = await prometheus_access(
        context, NAMESPACE, _spec({"url": "https://p", "bearerTokenSecretRef": {"name": "prom-token"}})
    )
    assert isinstance(unavailable, PrometheusAccessUnavailable) and not unavailable.no_prometheus


async def test_without_permission_to_read_secrets_the_reason_names_the_chart_value(
    api: InMemoryKubeApi, context: OperatorContext
) -> None:
    _secret(api, "prom-token", {"token": b"t"})
    api.forbidden_kinds.add("Secret")
    reason = await _reason(context, {"url": "https://p", "bearerTokenSecretRef": {"name": "prom-token"}})
    assert "may not read Secret 'prom-token' in namespace 'ml' (403 Forbidden)" in reason
    assert "rbac.readSecrets=true" in reason


async def test_an_api_error_reading_a_secret_is_a_reason_too(context: OperatorContext) -> None:
    class FailingApi(InMemoryKubeApi):
        async def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
            raise KubeApiError(500, "InternalError", "etcd timed out")

    failing = replace(context, api=FailingApi())
    reason = await _reason(failing, {"url": "https://p", "bearerTokenSecretRef": {"name": "t"}})
    assert "reading Secret 't' failed (500 InternalError)" in reason


async def test_a_resolved_secret_token_is_what_prometheus_receives(
    api: InMemoryKubeApi, context: OperatorContext
) -> None:
    _secret(api, "prom-token", {"token": b"from-the-secret\n"})
    with serve_recording() as server:
        access = await _resolve(
            context,
            {
                "url": server.url(),
                "bearerTokenSecretRef": {"name": "prom-token"},
                "headers": {"X-Team": "ml"},
            },
        )
        async with PrometheusClient(access) as client:
            await client.query("vector(1)")
    assert server.headers[0]["authorization"] == "Bearer from-the-secret"
    assert server.headers[0]["x-team"] == "ml"


async def test_the_timeout_is_the_callers(context: OperatorContext) -> None:
    access = await prometheus_access(context, NAMESPACE, _spec({"url": "http://p"}), timeout_seconds=2.5)
    assert isinstance(access, PrometheusAccess) and access.timeout_seconds == 2.5
