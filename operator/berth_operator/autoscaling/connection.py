"""How to reach one Prometheus: its URL, credentials, TLS trust and extra headers, as plain data.

Why a value of its own: managed Prometheus services, Thanos and OpenShift's monitoring stack sit
behind bearer tokens, basic auth, private CAs and tenant headers. The handlers resolve all of that
(from the spec, its Secrets and the operator's settings) into one frozen `PrometheusAccess`; the
client only applies it. Each part also carries the name of the setting it came from, so an error can
say what to fix. Secret values are kept out of `repr`, so an access logged by accident shows no
credential.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TIMEOUT_SECONDS = 5.0
"""Seconds one query may take end to end (connect + answer); default 5 s, well under one interval."""


@dataclass(frozen=True)
class BearerToken:
    """`Authorization: Bearer <token>`: the token itself (from a Secret) or a file that holds it, read
    again for every request so that a rotated token (a projected service-account token) is picked up."""

    setting: str
    """Where the token is configured, for error messages: a spec field or an environment variable."""
    token: str | None = field(default=None, repr=False)
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.token is None) == (self.file is None):
            raise ValueError(f"{self.setting}: give exactly one of a token and a token file")
        if self.token is not None and not self.token.strip():
            raise ValueError(f"{self.setting}: the bearer token is empty")


@dataclass(frozen=True)
class BasicAuth:
    """HTTP basic authentication: a username and a password (from a Secret, or a file read for every
    request)."""

    setting: str
    username: str
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None

    def __post_init__(self) -> None:
        if (self.password is None) == (self.password_file is None):
            raise ValueError(f"{self.setting}: give exactly one of a password and a password file")
        if not self.username or ":" in self.username:
            raise ValueError(f"{self.setting}: the username must be non-empty and contain no ':'")


@dataclass(frozen=True)
class TlsTrust:
    """How the server's certificate is checked. Default: the system's CA bundle, the URL's host name.

    A CA (PEM text from a Secret, or a file) *replaces* the system bundle, as Prometheus' own
    `tls_config.ca_file` does; `server_name` is the name sent (SNI) and checked against the
    certificate instead of the URL's host; `insecure_skip_verify` checks nothing.
    """

    setting: str = "the Prometheus TLS settings"
    ca_pem: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.ca_pem is not None and self.ca_file is not None:
            raise ValueError(f"{self.setting}: give a CA bundle or a CA file, not both")
        if self.insecure_skip_verify and (self.ca_pem is not None or self.ca_file is not None):
            raise ValueError(f"{self.setting}: a CA contradicts insecureSkipVerify")


@dataclass(frozen=True)
class AccessSettings:
    """The names, as a user sets them, of the settings an access was made from: error messages say
    which one to fix (a spec field, or the operator's environment variable)."""

    url: str = "the Prometheus URL"
    credentials: str = "the Prometheus credentials"
    ca: str = "the Prometheus CA"
    server_name: str = "the Prometheus TLS server name"


@dataclass(frozen=True)
class PrometheusAccess:
    """Everything needed to query one Prometheus. `headers` are sent with every request (a tenant
    header such as X-Scope-OrgID); `auth` sets the Authorization header."""

    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    auth: BearerToken | BasicAuth | None = None
    tls: TlsTrust = field(default_factory=TlsTrust)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    settings: AccessSettings = field(default_factory=AccessSettings)

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError(
                f"timeout_seconds: {self.timeout_seconds!r} must be a positive number of seconds"
            )
        if self.auth is not None and any(name.lower() == "authorization" for name, _ in self.headers):
            raise ValueError(f"{self.auth.setting}: an Authorization header contradicts the credentials")
