"""Resolves how the operator reaches one InferenceDeployment's Prometheus: `spec.autoscaling.prometheus`
over the operator's BERTH_PROMETHEUS_* settings, with credentials and CAs read from Secrets in the
resource's namespace.

Why in one place: the autoscaler, the canary analysis and the economics all query the same
Prometheus, and each must hold (not fail) with the same clear reason when it cannot -- a Secret that
does not exist, a key it lacks, or an operator not allowed to read Secrets. The rules:

- url unset: the operator's default Prometheus. Its credentials, TLS settings and headers apply, except
  where the spec brings its own: spec credentials (a token, basic auth or an Authorization header)
  replace the operator's; a spec `tls` replaces the operator's TLS settings; spec headers win name by
  name.
- url set: only the spec's own settings. The operator's credentials never go to a server a spec names
  (and the CRD refuses a spec's bearerTokenFile beside a url, for the same reason).

Secrets are read at every evaluation, so a rotated Secret is used at the next one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from berth_operator.api import InferenceDeploymentSpec, PrometheusSpec, SecretKeySelector
from berth_operator.api.prometheus import PrometheusTlsSpec
from berth_operator.autoscaling.connection import (
    DEFAULT_TIMEOUT_SECONDS,
    AccessSettings,
    BasicAuth,
    BearerToken,
    PrometheusAccess,
    TlsTrust,
)
from berth_operator.handlers.context import OperatorContext
from berth_operator.kube import Forbidden, KubeApi, KubeApiError
from berth_operator.kube.kinds import SECRET
from berth_operator.settings import OperatorSettings

FIELD = "spec.autoscaling.prometheus"
NO_PROMETHEUS = f"no Prometheus to query: set {FIELD}.url or the operator's BERTH_PROMETHEUS_URL"
OPERATOR_CREDENTIALS = (
    "the operator's BERTH_PROMETHEUS_BEARER_TOKEN_FILE, or BERTH_PROMETHEUS_BASIC_AUTH_USERNAME and "
    "_PASSWORD_FILE (chart: operator.prometheus)"
)
SPEC_NAMES = AccessSettings(
    url=f"{FIELD}.url",
    credentials=f"{FIELD}.bearerTokenSecretRef or basicAuth",
    ca=f"{FIELD}.tls.caSecretRef or tls.caFile (tls.insecureSkipVerify: true checks no certificate)",
    server_name=f"{FIELD}.tls.serverName",
)
OPERATOR_NAMES = AccessSettings(
    url="the operator's BERTH_PROMETHEUS_URL (chart: operator.prometheusUrl)",
    credentials=f"{FIELD}.bearerTokenSecretRef, bearerTokenFile or basicAuth, or {OPERATOR_CREDENTIALS}",
    ca=(
        f"{FIELD}.tls.caSecretRef or tls.caFile, or the operator's BERTH_PROMETHEUS_CA_FILE "
        "(BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY=true checks no certificate)"
    ),
    server_name=f"{FIELD}.tls.serverName or the operator's BERTH_PROMETHEUS_SERVER_NAME",
)


@dataclass(frozen=True)
class PrometheusAccessUnavailable:
    """Why Prometheus cannot be queried at all this time: the caller holds and puts `message` in status.
    `no_prometheus`: neither the spec nor the operator names one (a lasting state, not a failure)."""

    message: str
    no_prometheus: bool = False


async def prometheus_access(
    context: OperatorContext,
    namespace: str,
    spec: InferenceDeploymentSpec,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> PrometheusAccess | PrometheusAccessUnavailable:
    """How to query the Prometheus of the InferenceDeployment with `spec` in `namespace`."""
    prometheus = spec.autoscaling.prometheus
    settings = context.settings
    if prometheus.url is None and settings.prometheus_url is None:
        return PrometheusAccessUnavailable(NO_PROMETHEUS, no_prometheus=True)
    secrets = _Secrets(context.api, namespace)
    try:
        credentials = await _spec_credentials(prometheus, secrets)
        tls = await _spec_tls(prometheus.tls, secrets)
        headers = tuple(sorted((prometheus.headers or {}).items()))
        if prometheus.url is not None:
            return PrometheusAccess(
                url=prometheus.url,
                headers=headers,
                auth=credentials,
                tls=tls or TlsTrust(setting=f"{FIELD}.tls"),
                timeout_seconds=timeout_seconds,
                settings=SPEC_NAMES,
            )
        return _on_the_default(
            settings.prometheus_url or "", prometheus, settings, credentials, tls, headers, timeout_seconds
        )
    except (_Unreadable, ValueError) as error:
        return PrometheusAccessUnavailable(str(error))


def _on_the_default(
    url: str,
    prometheus: PrometheusSpec,
    settings: OperatorSettings,
    credentials: BearerToken | BasicAuth | None,
    tls: TlsTrust | None,
    headers: tuple[tuple[str, str], ...],
    timeout_seconds: float,
) -> PrometheusAccess:
    """The access to the operator's default Prometheus at `url`: the spec's parts over the operator's."""
    own_credentials = prometheus.sets_credentials()
    spec_names = {name.lower() for name, _ in headers}
    merged = [
        (name, value)
        for name, value in settings.prometheus_headers
        if name.lower() not in spec_names and not (own_credentials and name.lower() == "authorization")
    ]
    return PrometheusAccess(
        url=url,
        headers=tuple(sorted([*merged, *headers])),
        auth=credentials if own_credentials else _operator_credentials(settings),
        tls=tls if tls is not None else _operator_tls(settings),
        timeout_seconds=timeout_seconds,
        settings=OPERATOR_NAMES,
    )


def _operator_credentials(settings: OperatorSettings) -> BearerToken | BasicAuth | None:
    if settings.prometheus_bearer_token_file is not None:
        return BearerToken(
            setting="the operator's BERTH_PROMETHEUS_BEARER_TOKEN_FILE",
            file=settings.prometheus_bearer_token_file,
        )
    if settings.prometheus_basic_auth_username is not None:
        return BasicAuth(
            setting="the operator's BERTH_PROMETHEUS_BASIC_AUTH_USERNAME and _PASSWORD_FILE",
            username=settings.prometheus_basic_auth_username,
            password_file=settings.prometheus_basic_auth_password_file,
        )
    return None


def _operator_tls(settings: OperatorSettings) -> TlsTrust:
    return TlsTrust(
        setting="the operator's BERTH_PROMETHEUS_CA_FILE",
        ca_file=settings.prometheus_ca_file,
        insecure_skip_verify=settings.prometheus_insecure_skip_verify,
        server_name=settings.prometheus_server_name,
    )


async def _spec_credentials(prometheus: PrometheusSpec, secrets: _Secrets) -> BearerToken | BasicAuth | None:
    if prometheus.bearer_token_secret_ref is not None:
        reference = prometheus.bearer_token_secret_ref
        field = f"{FIELD}.bearerTokenSecretRef"
        token = await secrets.value(field, reference)
        return BearerToken(setting=_named(field, reference), token=token)
    if prometheus.bearer_token_file is not None:
        return BearerToken(setting=f"{FIELD}.bearerTokenFile", file=prometheus.bearer_token_file)
    basic = prometheus.basic_auth
    if basic is None:
        return None
    username = basic.username
    if basic.username_secret_ref is not None:
        username = (
            await secrets.value(f"{FIELD}.basicAuth.usernameSecretRef", basic.username_secret_ref)
        ).strip()
    password_field = f"{FIELD}.basicAuth.passwordSecretRef"
    password = await secrets.value(password_field, basic.password_secret_ref)
    return BasicAuth(
        setting=_named(f"{FIELD}.basicAuth", basic.password_secret_ref),
        username=username or "",
        password=password.rstrip("\r\n"),
    )


async def _spec_tls(tls: PrometheusTlsSpec | None, secrets: _Secrets) -> TlsTrust | None:
    if tls is None:
        return None
    if tls.ca_secret_ref is not None:
        field = f"{FIELD}.tls.caSecretRef"
        return TlsTrust(
            setting=_named(field, tls.ca_secret_ref),
            ca_pem=await secrets.value(field, tls.ca_secret_ref),
            server_name=tls.server_name,
        )
    return TlsTrust(
        setting=f"{FIELD}.tls.caFile" if tls.ca_file is not None else f"{FIELD}.tls",
        ca_file=tls.ca_file,
        insecure_skip_verify=tls.insecure_skip_verify,
        server_name=tls.server_name,
    )


def _named(field: str, reference: SecretKeySelector) -> str:
    return f"{field} (Secret {reference.name!r}, key {reference.key!r})"


class _Unreadable(Exception):
    """A referenced Secret or key that cannot be used; the message is the status message."""


class _Secrets:
    """Reads the Secrets of one namespace, each at most once per resolution."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._read: dict[str, dict[str, Any] | None] = {}

    async def value(self, field: str, reference: SecretKeySelector) -> str:
        """The text under `reference.key`, or _Unreadable naming `field` and what to do."""
        secret = await self._get(field, reference.name)
        data, plain = secret.get("data") or {}, secret.get("stringData") or {}
        if reference.key in data:
            try:
                value = base64.b64decode(str(data[reference.key]), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise _Unreadable(
                    f"{field}: key {reference.key!r} of Secret {reference.name!r} is not UTF-8 text"
                ) from None
        elif reference.key in plain:
            value = str(plain[reference.key])
        else:
            keys = sorted({*data, *plain})
            has = f"it has {', '.join(repr(key) for key in keys)}" if keys else "it is empty"
            raise _Unreadable(f"{field}: Secret {reference.name!r} has no key {reference.key!r} ({has})")
        if not value.strip():
            raise _Unreadable(f"{field}: key {reference.key!r} of Secret {reference.name!r} is empty")
        return value

    async def _get(self, field: str, name: str) -> dict[str, Any]:
        if name not in self._read:
            try:
                self._read[name] = await self._api.get(SECRET, self._namespace, name)
            except Forbidden:
                raise _Unreadable(
                    f"{field}: the operator may not read Secret {name!r} in namespace {self._namespace!r} "
                    "(403 Forbidden): Prometheus credentials from a Secret need the operator's permission "
                    "to get Secrets (chart value rbac.readSecrets=true), or use the operator's own "
                    "BERTH_PROMETHEUS_* settings"
                ) from None
            except KubeApiError as error:
                raise _Unreadable(
                    f"{field}: reading Secret {name!r} failed ({error.status} {error.reason}); "
                    "tried again at the next evaluation"
                ) from None
        secret = self._read[name]
        if secret is None:
            raise _Unreadable(f"{field}: Secret {name!r} not found in namespace {self._namespace!r}")
        return secret
