"""The Prometheus client applies a `PrometheusAccess` over a real socket: the headers and credentials
it sends (token files read again for every request), the TLS checks it makes (a CA, a server name,
none at all), and failures that name the setting to fix without showing a credential."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_operator.autoscaling.connection import (
    AccessSettings,
    BasicAuth,
    BearerToken,
    PrometheusAccess,
    TlsTrust,
)
from berth_operator.autoscaling.errors import (
    PrometheusAccessDenied,
    PrometheusCredentialsUnreadable,
    PrometheusTlsFailed,
    PrometheusUnavailable,
)
from berth_operator.autoscaling.prometheus import PrometheusClient
from tests.recording_server import RecordingServer, serve_recording
from tests.tls_certificates import SERVER_NAME, ServerCertificates, make_server_certificates

NAMES = AccessSettings(
    url="spec.url", credentials="spec.credentials", ca="spec.tls.ca", server_name="spec.tls.serverName"
)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with serve_recording() as recording:
        yield recording


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificates:
    return make_server_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certificates: ServerCertificates) -> Iterator[RecordingServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    with serve_recording(context) as recording:
        yield recording


async def _query(access: PrometheusAccess) -> float | None:
    async with PrometheusClient(access) as client:
        return (await client.query("vector(1)")).single_value()


async def test_headers_and_a_bearer_token_are_sent(server: RecordingServer) -> None:
    access = PrometheusAccess(
        url=server.url(),
        headers=(("X-Scope-OrgID", "team-a"),),
        auth=BearerToken(setting="spec.token", token="s3cr3t-token\n"),
    )
    assert await _query(access) == 1.0
    (sent,) = server.headers
    assert sent["authorization"] == "Bearer s3cr3t-token"
    assert sent["x-scope-orgid"] == "team-a"


async def test_a_token_file_is_read_again_for_every_request(server: RecordingServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    access = PrometheusAccess(url=server.url(), auth=BearerToken(setting="TOKEN_FILE", file=str(token_file)))
    async with PrometheusClient(access) as client:
        await client.query("vector(1)")
        token_file.write_text("rotated\n")
        await client.query("vector(1)")
    assert [sent["authorization"] for sent in server.headers] == ["Bearer first", "Bearer rotated"]


async def test_basic_auth_from_a_password_file_without_its_line_break(
    server: RecordingServer, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("pa:ss wörd\n")
    server.basic_auth = ("grafana", "pa:ss wörd")
    access = PrometheusAccess(
        url=server.url(),
        auth=BasicAuth(setting="BASIC", username="grafana", password_file=str(password_file)),
    )
    assert await _query(access) == 1.0
    expected = base64.b64encode("grafana:pa:ss wörd".encode()).decode()
    assert server.headers[0]["authorization"] == f"Basic {expected}"


async def test_a_missing_token_file_names_the_file_and_the_setting(
    server: RecordingServer, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-token"
    access = PrometheusAccess(
        url=server.url(), auth=BearerToken(setting="BERTH_PROMETHEUS_BEARER_TOKEN_FILE", file=str(missing))
    )
    with pytest.raises(PrometheusCredentialsUnreadable) as caught:
        await _query(access)
    assert str(missing) in str(caught.value)
    assert "No such file" in str(caught.value)
    assert "BERTH_PROMETHEUS_BEARER_TOKEN_FILE" in str(caught.value)
    assert server.headers == []  # nothing was sent without it


async def test_a_token_no_header_can_carry_is_refused_without_showing_it(server: RecordingServer) -> None:
    access = PrometheusAccess(url=server.url(), auth=BearerToken(setting="spec.token", token="abc\ndef"))
    with pytest.raises(PrometheusCredentialsUnreadable) as caught:
        await _query(access)
    assert "line breaks" in str(caught.value)
    assert "abc" not in str(caught.value)


async def test_401_without_credentials_says_which_settings_give_them(server: RecordingServer) -> None:
    server.basic_auth = ("user", "password")
    with pytest.raises(PrometheusAccessDenied) as caught:
        await _query(PrometheusAccess(url=server.url(), settings=NAMES))
    assert caught.value.status == 401
    assert "HTTP 401 Unauthorized (Unauthorized)" in str(caught.value)
    assert "none are configured: set spec.credentials" in str(caught.value)


async def test_401_with_a_wrong_password_names_its_setting_not_the_password(server: RecordingServer) -> None:
    server.basic_auth = ("user", "password")
    wrong = BasicAuth(setting="spec.basicAuth (Secret 'prom')", username="user", password="hunter2")
    with pytest.raises(PrometheusAccessDenied) as caught:
        await _query(PrometheusAccess(url=server.url(), auth=wrong))
    message = str(caught.value)
    assert (
        "username and password were refused (wrong, or expired?): check spec.basicAuth (Secret 'prom')"
        in message
    )
    assert "hunter2" not in message


async def test_403_says_the_credentials_lack_permission(server: RecordingServer) -> None:
    server.status, server.body = 403, "Forbidden (user=system:serviceaccount:berth:berth, verb=get)"
    token = BearerToken(setting="BERTH_PROMETHEUS_BEARER_TOKEN_FILE", token="t")
    with pytest.raises(PrometheusAccessDenied) as caught:
        await _query(PrometheusAccess(url=server.url(), auth=token))
    assert caught.value.status == 403
    assert "user=system:serviceaccount:berth:berth" in str(caught.value)
    assert "may not query this Prometheus" in str(caught.value)


async def test_credentials_in_the_url_never_reach_a_message() -> None:
    with pytest.raises(PrometheusUnavailable) as caught:
        await _query(PrometheusAccess(url="http://admin:hunter2@127.0.0.1:1", timeout_seconds=1))
    assert "hunter2" not in str(caught.value)
    assert "http://***@127.0.0.1:1" in str(caught.value)


def test_an_access_shows_no_secret_in_its_repr() -> None:
    access = PrometheusAccess(
        url="https://prometheus",
        headers=(("X-Api-Key", "header-secret"),),
        auth=BasicAuth(setting="s", username="u", password="password-secret"),
    )
    shown = repr(access) + repr(BearerToken(setting="s", token="token-secret"))
    assert "secret" not in shown.replace("setting", "")


def test_an_authorization_header_beside_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="Authorization header contradicts"):
        PrometheusAccess(
            url="http://p", headers=(("authorization", "x"),), auth=BearerToken(setting="s", token="t")
        )


async def test_a_private_ca_is_trusted(tls_server: RecordingServer, certificates: ServerCertificates) -> None:
    tls = TlsTrust(setting="spec.tls.caSecretRef", ca_pem=certificates.ca_pem)
    assert await _query(PrometheusAccess(url=tls_server.url(SERVER_NAME), tls=tls)) == 1.0
    from_file = TlsTrust(setting="spec.tls.caFile", ca_file=str(certificates.ca_cert))
    assert await _query(PrometheusAccess(url=tls_server.url(SERVER_NAME), tls=from_file)) == 1.0


async def test_without_the_ca_the_certificate_is_not_trusted(tls_server: RecordingServer) -> None:
    with pytest.raises(PrometheusTlsFailed) as caught:
        await _query(PrometheusAccess(url=tls_server.url(SERVER_NAME), settings=NAMES))
    assert "certificate is not trusted" in str(caught.value)
    assert "set the CA that signed it in spec.tls.ca" in str(caught.value)
    assert tls_server.headers == []


async def test_a_host_the_certificate_does_not_name_needs_the_server_name(
    tls_server: RecordingServer, certificates: ServerCertificates
) -> None:
    by_address = PrometheusAccess(
        url=tls_server.url("127.0.0.1"), tls=TlsTrust(ca_pem=certificates.ca_pem), settings=NAMES
    )
    with pytest.raises(PrometheusTlsFailed) as caught:
        await _query(by_address)
    assert "not valid for the name checked" in str(caught.value)
    assert "set spec.tls.serverName" in str(caught.value)
    named = TlsTrust(ca_pem=certificates.ca_pem, server_name=SERVER_NAME)
    assert await _query(PrometheusAccess(url=tls_server.url("127.0.0.1"), tls=named)) == 1.0


async def test_insecure_skip_verify_accepts_any_certificate(tls_server: RecordingServer) -> None:
    insecure = TlsTrust(insecure_skip_verify=True)
    assert await _query(PrometheusAccess(url=tls_server.url("127.0.0.1"), tls=insecure)) == 1.0


async def test_a_ca_that_is_not_pem_names_its_setting(tls_server: RecordingServer) -> None:
    broken = TlsTrust(setting="spec.tls.caSecretRef (Secret 'ca')", ca_pem="not a certificate")
    with pytest.raises(PrometheusTlsFailed, match=r"CA bundle from spec.tls.caSecretRef \(Secret 'ca'\)"):
        await _query(PrometheusAccess(url=tls_server.url(SERVER_NAME), tls=broken))


async def test_https_to_a_plain_http_port_says_to_use_http(server: RecordingServer) -> None:
    plain = PrometheusAccess(url=server.url().replace("http://", "https://"), settings=NAMES)
    with pytest.raises(
        PrometheusTlsFailed, match=r"does not speak TLS at this address; use http:// in spec\.url"
    ):
        await _query(plain)


def test_contradictory_tls_trust_is_refused() -> None:
    with pytest.raises(ValueError, match="contradicts insecureSkipVerify"):
        TlsTrust(setting="t", ca_file="/ca.crt", insecure_skip_verify=True)
    with pytest.raises(ValueError, match="not both"):
        TlsTrust(setting="t", ca_file="/ca.crt", ca_pem="pem")


async def test_a_hang_up_on_plain_http_suggests_https() -> None:
    # What a TLS-only server may look like to plain HTTP: the connection closes without an answer.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up() -> None:
            connection, _ = listener.accept()
            connection.close()

        closer = threading.Thread(target=hang_up, daemon=True)
        closer.start()
        port = listener.getsockname()[1]
        with pytest.raises(PrometheusUnavailable) as caught:
            await _query(PrometheusAccess(url=f"http://127.0.0.1:{port}", settings=NAMES))
        closer.join(timeout=5)
    assert "the connection closed without an answer" in str(caught.value)
    assert "if it does, use https:// in spec.url" in str(caught.value)
