"""A throwaway CA and a server certificate it signed, made with ``cryptography``, for the tests of
the Prometheus client's TLS settings (a local HTTPS server, and Debian's Prometheus started with
``--web.config.file``).

The server certificate names only the DNS name ``localhost`` (no IP address), so a client that
connects to ``127.0.0.1`` fails the host-name check unless it sets the server name: both sides of
``tls.serverName`` can be tested against one server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster.pki import issue, make_ca

SERVER_NAME = "localhost"


@dataclass(frozen=True)
class ServerCertificates:
    """PEM files: the CA's certificate, and the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


def make_server_certificates(directory: Path, server_name: str = SERVER_NAME) -> ServerCertificates:
    """A new CA, and a certificate for `server_name` (a DNS name only) signed by it, in `directory`
    (the local control plane's own CA and issuing, tests/cluster/pki.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = make_ca(directory, "berth test CA")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)])
    server = issue(
        directory,
        "server",
        subject,
        authority.key,
        authority.cert,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(server_name)],
    )
    return ServerCertificates(ca_cert=authority.files.cert, server_cert=server.cert, server_key=server.key)
