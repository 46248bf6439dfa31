"""The gateway's PKI: what first start makes, what later starts reuse."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from openshell.gateway import tls
from openshell.gateway.tls import (
    Pki,
    certificate_names,
    client_context,
    ensure_pki,
    server_context,
)

KEYS = ("ca.key", "server.key", "client.key", "supervisor.key")
CERTS = ("ca.crt", "server.crt", "client.crt", "supervisor.crt")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _snapshot(pki: Pki) -> dict[str, bytes]:
    return {name: (pki.root / name).read_bytes() for name in KEYS + CERTS}


def test_first_start_creates_every_file_with_private_key_modes(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    assert _mode(pki.root) == 0o700
    for name in KEYS:
        assert _mode(pki.root / name) == 0o600, name
    for name in CERTS:
        assert (pki.root / name).is_file(), name


def test_server_certificate_names_loopback_localhost_and_host_name(tmp_path):
    pki = ensure_pki(tmp_path / "pki", extra_names=["gw.example.test", "10.1.2.3"])
    names = set(certificate_names(_cert(pki.server_cert)))
    assert {"127.0.0.1", "::1", "localhost", socket.gethostname(), "gw.example.test", "10.1.2.3"} <= names
    san = _cert(pki.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # an IP must be an IP SAN (gRPC checks 127.0.0.1 against iPAddress entries, not DNS)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_leaf_certificates_chain_to_the_ca_with_the_right_usage(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = {
        pki.server_cert: ExtendedKeyUsageOID.SERVER_AUTH,
        pki.client_cert: ExtendedKeyUsageOID.CLIENT_AUTH,
        pki.supervisor_cert: ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    for path, usage in usages.items():
        cert = _cert(path)
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
    cns = {_cert(p).subject.rfc4514_string() for p in (pki.client_cert, pki.supervisor_cert)}
    assert cns == {f"CN={tls.USER_CN}", f"CN={tls.SUPERVISOR_CN}"}


def test_restart_reuses_existing_certificates_and_keys(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    before = _snapshot(pki)
    again = ensure_pki(tmp_path / "pki")
    assert _snapshot(again) == before


def test_missing_leaf_is_reissued_under_the_same_ca(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    before = _snapshot(pki)
    pki.client_key.unlink()
    ensure_pki(pki.root)
    after = _snapshot(pki)
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    assert after["server.crt"] == before["server.crt"]
    assert after["client.key"] != before["client.key"]
    _cert(pki.client_cert).verify_directly_issued_by(_cert(pki.ca_cert))
    assert _mode(pki.client_key) == 0o600


def test_server_certificate_reissued_when_a_required_name_is_missing(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    old = pki.server_cert.read_bytes()
    ensure_pki(pki.root, extra_names=["new-name.example.test"])
    assert pki.server_cert.read_bytes() != old
    assert "new-name.example.test" in certificate_names(_cert(pki.server_cert))


def test_expiring_leaf_is_renewed(tmp_path, monkeypatch):
    pki = ensure_pki(tmp_path / "pki")
    old = pki.server_cert.read_bytes()
    # pretend it is two years later: the leaf (825 days) is within RENEW_BEFORE, the CA is not
    later = tls.now() + dt.timedelta(days=800)
    monkeypatch.setattr(tls, "now", lambda: later)
    ensure_pki(pki.root)
    assert pki.server_cert.read_bytes() != old


def test_server_context_requires_client_certificates_and_offers_h2(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    ctx = server_context(pki)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls.ALPN_PROTOCOLS == ("h2", "http/1.1")
    client = client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


def test_unreadable_ca_is_a_clear_error(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    pki.ca_key.write_text("not a key")
    with pytest.raises(tls.PkiError, match="remove the directory"):
        ensure_pki(pki.root)
