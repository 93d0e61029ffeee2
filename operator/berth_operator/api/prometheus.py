"""`spec.autoscaling.prometheus`: which Prometheus the operator queries for a resource, and how it
authenticates -- a bearer token or basic auth, a CA, extra headers -- for managed Prometheus, Thanos
and OpenShift's monitoring stack. The operator resolves these (handlers/prometheus_access.py); the
rules that relate the fields are CEL in the CRD and pydantic here, side by side.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule, cel_matches
from berth_operator.api.common import DNS_SUBDOMAIN_PATTERN, SECRET_KEY_PATTERN, SecretKeySelector

HEADER_NAME_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,127}$"
"""An HTTP header name berth sends: letters, digits, '-', '_' and '.', at most 128 characters."""
HEADER_VALUE_PATTERN = r"^[\t -~]*$"
"""An HTTP header value: printable ASCII and tabs (no line breaks, so no header can be smuggled in)."""
MAX_HEADERS = 16
MAX_HEADER_VALUE_LENGTH = 1024
OPERATOR_FILE_PATTERN = r"^/[^\x00]*$"
"""An absolute path in the operator's own filesystem."""
_AUTH_FIELDS = ("bearerTokenSecretRef", "bearerTokenFile", "basicAuth")


def _secret_key(default: str, holds: str) -> Any:
    return Field(
        default=default,
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description=f"Key within the Secret that holds {holds}.",
    )


class TokenSecretKeySelector(SecretKeySelector):
    """A Secret key holding a bearer token; a kubernetes.io/service-account-token Secret's key is `token`."""

    key: str = _secret_key("token", "the token")


class UsernameSecretKeySelector(SecretKeySelector):
    """A Secret key holding a user name; a kubernetes.io/basic-auth Secret's key is `username`."""

    key: str = _secret_key("username", "the user name")


class PasswordSecretKeySelector(SecretKeySelector):
    """A Secret key holding a password; a kubernetes.io/basic-auth Secret's key is `password`."""

    key: str = _secret_key("password", "the password")


class CaSecretKeySelector(SecretKeySelector):
    """A Secret key holding PEM CA certificates; a service-account-token Secret's key is `ca.crt`."""

    key: str = _secret_key("ca.crt", "the PEM bundle of CA certificates")


class BasicAuthSpec(ApiModel):
    """HTTP basic authentication (Grafana Cloud, Prometheus' own --web.config.file basic_auth_users, a
    proxy in front). A kubernetes.io/basic-auth Secret holds both parts under the default keys."""

    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[^:\x00-\x1f\x7f]+$",
        description="User name, in plain text (no ':'). Give this or usernameSecretRef.",
    )
    username_secret_ref: UsernameSecretKeySelector | None = Field(
        default=None,
        description="Secret key holding the user name (key default `username`). Give this or username.",
    )
    password_secret_ref: PasswordSecretKeySelector = Field(
        description=(
            "Secret key holding the password (key default `password`), in the InferenceDeployment's "
            "namespace; the operator reads it (chart value rbac.readSecrets=true)."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="has(self.username) != has(self.usernameSecretRef)",
            message="autoscaling.prometheus.basicAuth needs exactly one of username and usernameSecretRef",
            holds=lambda basic: (basic.username is None) != (basic.username_secret_ref is None),
        ),
    )


class PrometheusTlsSpec(ApiModel):
    """How the operator checks the certificate of an https:// Prometheus. Without a CA here, the
    operator's default applies to the default Prometheus (BERTH_PROMETHEUS_CA_FILE), and the system's
    CA bundle otherwise."""

    ca_secret_ref: CaSecretKeySelector | None = Field(
        default=None,
        description=(
            "Secret key holding the PEM certificates of the CA(s) that signed Prometheus' certificate "
            "(key default `ca.crt`), in the InferenceDeployment's namespace; they replace the system's "
            "CA bundle. The operator reads the Secret (chart value rbac.readSecrets=true)."
        ),
    )
    ca_file: str | None = Field(
        default=None,
        max_length=1024,
        pattern=OPERATOR_FILE_PATTERN,
        description=(
            "Absolute path of a PEM CA bundle in the operator's own filesystem (its container, not the "
            "runtime pods'), e.g. OpenShift's /var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt; "
            "instead of caSecretRef. It replaces the system's CA bundle."
        ),
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description=(
            "Do not check Prometheus' certificate at all: the connection is encrypted but anyone in the "
            "path can pose as Prometheus and read the credentials. Not with caSecretRef or caFile."
        ),
    )
    server_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "Host name sent in the TLS handshake (SNI) and checked against the certificate instead of "
            "the url's host: for a url by IP address, or a Service name the certificate does not carry."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="!(has(self.caSecretRef) && has(self.caFile))",
            message="autoscaling.prometheus.tls: set caSecretRef or caFile, not both",
            holds=lambda tls: tls.ca_secret_ref is None or tls.ca_file is None,
        ),
        CrossFieldRule(
            cel="!self.insecureSkipVerify || !(has(self.caSecretRef) || has(self.caFile))",
            message=(
                "autoscaling.prometheus.tls.insecureSkipVerify checks no certificate, so caSecretRef and "
                "caFile would be ignored: set one or the other"
            ),
            holds=lambda tls: (
                not tls.insecure_skip_verify or (tls.ca_secret_ref is None and tls.ca_file is None)
            ),
            field_path=".insecureSkipVerify",
        ),
    )


HeaderValue = Annotated[str, Field(max_length=MAX_HEADER_VALUE_LENGTH, pattern=HEADER_VALUE_PATTERN)]


def _sets_credentials(prometheus: PrometheusSpec) -> bool:
    return any(
        part is not None
        for part in (prometheus.bearer_token_secret_ref, prometheus.bearer_token_file, prometheus.basic_auth)
    )


class PrometheusSpec(ApiModel):
    """Where the autoscaler, the canary analysis and the economics read the runtime's metrics, and how
    they authenticate. With url unset, the operator's default Prometheus is used with the operator's
    credentials, CA and headers (BERTH_PROMETHEUS_*); each of credentials, tls and headers (per
    name) set here replaces the operator's. With url set, only what is set here is used: the
    operator's credentials never go to a server a spec names."""

    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="Prometheus base URL (http or https). Unset: the operator's default Prometheus.",
    )
    bearer_token_secret_ref: TokenSecretKeySelector | None = Field(
        default=None,
        description=(
            "Send `Authorization: Bearer <token>` with the token in this Secret key (key default "
            "`token`), in the InferenceDeployment's namespace, read again at every evaluation. The "
            "operator reads the Secret: the chart's rbac.readSecrets=true. At most one of "
            "bearerTokenSecretRef, bearerTokenFile and basicAuth."
        ),
    )
    bearer_token_file: str | None = Field(
        default=None,
        max_length=1024,
        pattern=OPERATOR_FILE_PATTERN,
        description=(
            "Send `Authorization: Bearer <token>` with the token in this file of the operator's own "
            "filesystem (a Secret or projected token mounted into the operator pod, not the runtime "
            "pods), read again for every query so a rotated token is used. Only with url unset: an "
            "operator file goes only to the operator's default Prometheus."
        ),
    )
    basic_auth: BasicAuthSpec | None = Field(
        default=None, description="Send HTTP basic authentication. Not with a bearer token."
    )
    tls: PrometheusTlsSpec | None = Field(
        default=None,
        description="Certificate checks for an https:// Prometheus. Needs an https:// url if url is set.",
    )
    headers: dict[str, HeaderValue] | None = Field(
        default=None,
        max_length=MAX_HEADERS,
        description=(
            "Extra HTTP headers sent with every query, e.g. X-Scope-OrgID (the tenant of Thanos, Cortex "
            "or Mimir). Plain text: not for secrets. Names: letters, digits, '-', '_', '.'; values: "
            "printable ASCII. No Authorization header beside bearerTokenSecretRef, bearerTokenFile or "
            "basicAuth. With url unset they are added to the operator's BERTH_PROMETHEUS_HEADERS "
            "(these win, name by name)."
        ),
        json_schema_extra={"maxProperties": MAX_HEADERS},
    )

    cross_field_rules = (
        CrossFieldRule(
            cel=" + ".join(f"(has(self.{name}) ? 1 : 0)" for name in _AUTH_FIELDS) + " <= 1",
            message=(
                "autoscaling.prometheus: set at most one of bearerTokenSecretRef, bearerTokenFile and "
                "basicAuth"
            ),
            holds=lambda prometheus: (
                sum(
                    part is not None
                    for part in (
                        prometheus.bearer_token_secret_ref,
                        prometheus.bearer_token_file,
                        prometheus.basic_auth,
                    )
                )
                <= 1
            ),
        ),
        CrossFieldRule(
            cel="!has(self.bearerTokenFile) || !has(self.url)",
            message=(
                "autoscaling.prometheus.bearerTokenFile is a file of the operator's and goes only to the "
                "operator's default Prometheus: leave url unset, or use bearerTokenSecretRef"
            ),
            holds=lambda prometheus: prometheus.bearer_token_file is None or prometheus.url is None,
            field_path=".bearerTokenFile",
        ),
        CrossFieldRule(
            cel="!has(self.tls) || !has(self.url) || self.url.startsWith('https://')",
            message="autoscaling.prometheus.tls needs an https:// url",
            holds=lambda prometheus: (
                prometheus.tls is None or prometheus.url is None or prometheus.url.startswith("https://")
            ),
            field_path=".tls",
        ),
        CrossFieldRule(
            cel=f"!has(self.headers) || self.headers.all(name, {cel_matches('name', HEADER_NAME_PATTERN)})",
            message=(
                "autoscaling.prometheus.headers: each name must be 1-128 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            ),
            holds=lambda prometheus: all(
                re.fullmatch(HEADER_NAME_PATTERN, name) for name in prometheus.headers or {}
            ),
            field_path=".headers",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.headers) || !("
                + " || ".join(f"has(self.{name})" for name in _AUTH_FIELDS)
                + ") || self.headers.all(name, name.lowerAscii() != 'authorization')"
            ),
            message=(
                "autoscaling.prometheus.headers may not set Authorization beside bearerTokenSecretRef, "
                "bearerTokenFile or basicAuth (they set it)"
            ),
            holds=lambda prometheus: (
                not _sets_credentials(prometheus)
                or all(name.lower() != "authorization" for name in prometheus.headers or {})
            ),
            field_path=".headers",
        ),
    )

    def sets_credentials(self) -> bool:
        """Whether this spec brings its own credentials (a bearer token, basic auth, or an
        Authorization header): then the operator's are not used."""
        return _sets_credentials(self) or any(name.lower() == "authorization" for name in self.headers or {})
