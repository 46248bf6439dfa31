"""openshell.pki: the one place certificates are built (gateway PKI, sandbox CA, inference leaf)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

from cryptography import x509
from cryptography.x509.oid import NameOID
from openshell import pki


def _ca(days: int = 3650):
    return pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]), dt.timedelta(days=days))


def test_leaf_names_ips_and_dns_and_never_outlives_its_ca():
    ca_cert, ca_key = _ca(days=10)
    key = pki.new_key()
    leaf = pki.issue_leaf(ca_cert, ca_key, key.public_key(), "api.test", sans=["api.test", "10.199.0.2"], validity=dt.timedelta(days=365))
    leaf.verify_directly_issued_by(ca_cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.199.0.2"]
    assert leaf.not_valid_after_utc == ca_cert.not_valid_after_utc
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_server_context_serves_the_chain_to_a_client_trusting_the_ca():
    ca_cert, ca_key = _ca()
    key = pki.new_key()
    leaf = pki.issue_leaf(ca_cert, ca_key, key.public_key(), "inference.local", sans=["inference.local"], validity=dt.timedelta(days=1))
    server_ctx = pki.server_context(pki.cert_pem(leaf) + pki.key_pem(key))
    client_ctx = ssl.create_default_context(cadata=pki.cert_pem(ca_cert).decode())
    client_ctx.set_alpn_protocols(["http/1.1"])
    a, b = socket.socketpair()
    with a, b:
        server = threading.Thread(target=lambda: server_ctx.wrap_socket(a, server_side=True).close(), daemon=True)
        server.start()
        with client_ctx.wrap_socket(b, server_hostname="inference.local") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        server.join(10)
