"""The local control plane's certificates: who they name and who signed them (no cluster needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster.pki import make_pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_client_certificates_carry_the_identities_rbac_knows(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ca = _load(pki.ca.cert)
    identities = {
        "admin": (pki.admin, "berth-admin", ["system:masters"]),
        "controller-manager": (pki.controller_manager, "system:kube-controller-manager", []),
        "scheduler": (pki.scheduler, "system:kube-scheduler", []),
    }
    for role, (pair, common_name, groups) in identities.items():
        cert = _load(pair.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name, role
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == groups, (
            role
        )
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
        assert oct(pair.key.stat().st_mode & 0o777) == "0o600"


def test_serving_certificate_covers_loopback_and_the_kubernetes_service(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    serving = _load(pki.serving.cert)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    serving.verify_directly_issued_by(_load(pki.ca.cert))
    assert b"PUBLIC KEY" in pki.service_account_public_key.read_bytes()
