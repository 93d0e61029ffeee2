"""A thin async client for Prometheus' HTTP API (`/api/v1/query`), built on httpx.

Why our own and not a library: the autoscaler needs exactly one call (an instant query), a hard
timeout on it, and failures sorted into types the caller can act on — unreachable or slow
(`PrometheusUnavailable`: hold replicas, retry next interval; `PrometheusTlsFailed` when the TLS
handshake is what failed), credentials refused (`PrometheusAccessDenied`, 401/403) or unreadable
(`PrometheusCredentialsUnreadable`), a query Prometheus refuses (`PrometheusQueryRejected`: a bug or a
bad selector), or a reply of the wrong shape (`PrometheusResponseInvalid`). Every failure is a
`PrometheusError` whose message names the setting to fix; nothing else escapes, and no credential
appears in a message. How to connect (credentials, CA, headers) comes in a `PrometheusAccess`.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Generator, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from berth_operator.autoscaling.connection import (
    DEFAULT_TIMEOUT_SECONDS,
    BasicAuth,
    BearerToken,
    PrometheusAccess,
    TlsTrust,
)
from berth_operator.autoscaling.errors import (
    PrometheusAccessDenied,
    PrometheusCredentialsUnreadable,
    PrometheusQueryRejected,
    PrometheusResponseInvalid,
    PrometheusTlsFailed,
    PrometheusUnavailable,
)
from berth_operator.autoscaling.samples import QueryResult, Sample

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "PrometheusClient", "display_url", "validate_base_url"]

# What an HTTP header can carry of a credential: visible ASCII (a token with a line break in it would
# otherwise reach the HTTP library, whose error message quotes the header -- the token with it).
_HEADER_SAFE = re.compile(r"^[!-~]+$")
# OpenSSL's reasons when the other side does not speak TLS at all (a plain-HTTP port).
_NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG")


def validate_base_url(url: str, field: str = "prometheus.url") -> str:
    """Return `url` without a trailing slash, or raise ValueError naming the field and the value."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{field}: {display_url(url)!r} is not a Prometheus base URL; expected http(s)://host[:port][/path]"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{field}: {display_url(url)!r} must not carry a query string or fragment")
    return url.rstrip("/")


def display_url(url: str) -> str:
    """`url` as messages show it: a user:password@ part is replaced by `***@`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class PrometheusClient:
    """Instant queries against one Prometheus server. Use as an async context manager, or call
    `aclose()`. `access` is a `PrometheusAccess` (or a bare URL: no credentials, default TLS);
    `timeout_seconds`, when given, replaces the access's; pass `transport` only to route requests
    in-process. The HTTP connection is made on the first query, so a CA that does not load is a
    `PrometheusTlsFailed` from `query`, like every other failure."""

    def __init__(
        self,
        access: PrometheusAccess | str,
        *,
        timeout_seconds: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if isinstance(access, str):
            access = PrometheusAccess(url=access)
        if timeout_seconds is not None:
            access = replace(access, timeout_seconds=timeout_seconds)
        self.access = access
        self.base_url = validate_base_url(access.url)
        self._shown_url = display_url(self.base_url)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        server_name = access.tls.server_name
        self._extensions: dict[str, Any] = {"sni_hostname": server_name} if server_name else {}

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            access = self.access
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(access.timeout_seconds),
                transport=self._transport,
                headers=dict(access.headers),
                auth=None if access.auth is None else _CredentialsAuth(access.auth),
                verify=_verification(access.tls, self._shown_url),
            )
        return self._http

    async def query(self, promql: str, at: float | None = None) -> QueryResult:
        """Evaluate `promql` as an instant query, at epoch second `at` (Prometheus' now if None)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        http = self._client()
        try:
            response = await http.post("/api/v1/query", data=params, extensions=self._extensions)
        except httpx.TimeoutException as error:
            raise PrometheusUnavailable(self._shown_url, f"timed out ({type(error).__name__})") from error
        except httpx.HTTPError as error:
            handshake = _ssl_cause(error)
            if handshake is not None:
                raise PrometheusTlsFailed(self._shown_url, self._tls_detail(handshake)) from error
            detail = f"{type(error).__name__}: {str(error) or 'the connection closed without an answer'}"
            if self.base_url.startswith("http://") and isinstance(
                error, httpx.ReadError | httpx.RemoteProtocolError
            ):
                # A TLS-only server answers plain HTTP with a 400 and hangs up; the client may see only
                # the hang-up (a reset), depending on when the rest of its request arrived.
                detail += (
                    "; a server that speaks only HTTPS does this to plain HTTP: if it does, use https:// in "
                    f"{self.access.settings.url}"
                )
            raise PrometheusUnavailable(self._shown_url, detail) from error
        if response.status_code in (401, 403):
            raise PrometheusAccessDenied(
                self._shown_url,
                response.status_code,
                _brief(response),
                self._denied_hint(response.status_code),
            )
        if response.status_code >= 500:
            raise PrometheusUnavailable(
                self._shown_url, f"HTTP {response.status_code}: {response.text[:200]}"
            )
        if response.status_code == 400 and "HTTP request to an HTTPS server" in response.text:
            raise PrometheusUnavailable(
                self._shown_url,
                f"the server speaks HTTPS at this address: use https:// in {self.access.settings.url}",
            )
        body = _json_object(promql, response)
        if response.status_code >= 400 or body.get("status") != "success":
            raise PrometheusQueryRejected(
                promql,
                str(body.get("errorType", f"HTTP {response.status_code}")),
                str(body.get("error", response.text[:200])),
            )
        return QueryResult(promql, _parse_data(promql, body.get("data")))

    def _tls_detail(self, error: ssl.SSLError) -> str:
        names = self.access.settings
        if isinstance(error, ssl.SSLCertVerificationError):
            why = error.verify_message or str(error.reason)
            if "mismatch" in why:
                return (
                    f"TLS: the server's certificate is not valid for the name checked ({why}): set "
                    f"{names.server_name} to a name the certificate carries, or use that name in {names.url}"
                )
            return (
                f"TLS: the server's certificate is not trusted ({why}): set the CA that signed it in "
                f"{names.ca}"
            )
        if error.reason in _NOT_TLS_REASONS:
            return (
                f"TLS handshake failed ({error.reason}): the server does not speak TLS at this address; "
                f"use http:// in {names.url}"
            )
        return f"TLS handshake failed: {error.reason or error}"

    def _denied_hint(self, status: int) -> str:
        auth, names = self.access.auth, self.access.settings
        if auth is None:
            if any(name.lower() == "authorization" for name, _ in self.access.headers):
                return f"the Authorization header was refused: check {names.credentials}"
            if status == 401:
                return f"Prometheus asks for credentials and none are configured: set {names.credentials}"
            return f"Prometheus refuses queries without credentials: set {names.credentials}"
        what = "bearer token was" if isinstance(auth, BearerToken) else "username and password were"
        if status == 401:
            return f"the {what} refused (wrong, or expired?): check {auth.setting}"
        what = "bearer token" if isinstance(auth, BearerToken) else "user"
        return (
            f"the {what} from {auth.setting} may not query this Prometheus: grant it read access "
            "(OpenShift: the cluster-monitoring-view role for the thanos-querier's port 9091)"
        )


class _CredentialsAuth(httpx.Auth):
    """Sets the Authorization header on every request, reading a token or password file afresh each
    time (rotation); an unreadable file is a `PrometheusCredentialsUnreadable` naming the setting."""

    def __init__(self, credentials: BearerToken | BasicAuth) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header()
        yield request

    def _header(self) -> str:
        credentials = self._credentials
        if isinstance(credentials, BearerToken):
            token = credentials.token
            if token is None:
                token = _read_secret_file("bearer token", credentials.file or "", credentials.setting)
            token = token.strip()
            if not _HEADER_SAFE.match(token):
                raise PrometheusCredentialsUnreadable(
                    "bearer token",
                    credentials.file or "its Secret",
                    "it holds spaces, line breaks or non-ASCII characters, which no HTTP header carries",
                    credentials.setting,
                )
            return f"Bearer {token}"
        password = credentials.password
        if password is None:
            password = _read_secret_file("password", credentials.password_file or "", credentials.setting)
            password = password.rstrip("\r\n")
        pair = f"{credentials.username}:{password}".encode()
        return f"Basic {base64.b64encode(pair).decode('ascii')}"


def _read_secret_file(what: str, path: str, setting: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PrometheusCredentialsUnreadable(
            what, path, error.strerror or type(error).__name__, setting
        ) from None
    except UnicodeDecodeError:
        raise PrometheusCredentialsUnreadable(what, path, "the file is not UTF-8 text", setting) from None
    except ValueError:  # a path with a NUL in it
        raise PrometheusCredentialsUnreadable(what, repr(path), "not a file path", setting) from None
    if not text.strip():
        raise PrometheusCredentialsUnreadable(what, path, "the file is empty", setting)
    return text


def _verification(tls: TlsTrust, shown_url: str) -> ssl.SSLContext | bool:
    """httpx's `verify`: False to skip, True for the system bundle, or a context trusting one CA."""
    if tls.insecure_skip_verify:
        return False
    if tls.ca_pem is None and tls.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=tls.ca_file, cadata=tls.ca_pem)
    except (OSError, ValueError) as error:
        detail = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
        raise PrometheusTlsFailed(
            shown_url,
            f"the CA bundle from {tls.setting} does not load ({detail}): it must be PEM certificates",
        ) from None


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError behind an httpx error (httpx and httpcore chain the original), if any."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _brief(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f" ({text})" if text else ""


def _json_object(promql: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise PrometheusResponseInvalid(
            promql, f"HTTP {response.status_code}, body is not JSON: {response.text[:200]!r}"
        ) from error
    if not isinstance(body, dict):
        raise PrometheusResponseInvalid(promql, f"body is a JSON {type(body).__name__}, not an object")
    return body


def _parse_data(promql: str, data: object) -> tuple[Sample, ...]:
    if not isinstance(data, dict):
        raise PrometheusResponseInvalid(promql, "'data' is missing or not an object")
    result_type, result = data.get("resultType"), data.get("result")
    if result_type == "scalar":
        return (_parse_point(promql, {}, result),)
    if result_type != "vector":
        raise PrometheusResponseInvalid(promql, f"resultType {result_type!r}; expected 'vector' or 'scalar'")
    if not isinstance(result, list):
        raise PrometheusResponseInvalid(promql, "'data.result' of a vector is not a list")
    samples = []
    for element in result:
        if not isinstance(element, dict) or not isinstance(element.get("metric"), dict):
            raise PrometheusResponseInvalid(promql, f"vector element {element!r} has no 'metric' object")
        labels = {str(name): str(value) for name, value in element["metric"].items()}
        samples.append(_parse_point(promql, labels, element.get("value")))
    return tuple(samples)


def _parse_point(promql: str, labels: Mapping[str, str], point: object) -> Sample:
    if not isinstance(point, list) or len(point) != 2:
        raise PrometheusResponseInvalid(promql, f"sample {point!r} is not a [timestamp, value] pair")
    timestamp, value = point
    try:
        return Sample(labels=labels, value=float(value), timestamp=float(timestamp))
    except (TypeError, ValueError) as error:
        raise PrometheusResponseInvalid(promql, f"sample {point!r} does not hold numbers") from error
