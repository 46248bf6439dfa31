"""The gateway's private PKI and its ``ssl`` contexts (DESIGN.md §4).

On first start the gateway makes, under ``<state>/pki``:

* ``ca.crt``/``ca.key`` — a CA that exists only for this gateway;
* ``server.crt``/``server.key`` — the gateway's certificate (SAN 127.0.0.1, ::1,
  localhost, the host name, plus any names the caller adds);
* ``client.crt``/``client.key`` — the user's client certificate (the CLI copies it
  to the client configuration);
* ``supervisor.crt``/``supervisor.key`` — the certificate supervisors present.

Later starts reuse everything that is still valid; a leaf that is missing,
expiring within :data:`RENEW_BEFORE`, not issued by the current CA, or (for the
server) missing a required name is re-issued. Keys are ECDSA P-256 and written
with mode 0600 from the first byte.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openshell.gateway.paths import write_private
from openshell.pki import cert_pem, general_name, issue_leaf, key_pem, make_ca, new_key, now

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=825)
#: a leaf closer than this to its expiry is re-issued at start
RENEW_BEFORE = dt.timedelta(days=30)
#: ALPN protocols the front offers, in preference order
ALPN_PROTOCOLS = ("h2", "http/1.1")

USER_CN = "openshell-user"
SUPERVISOR_CN = "openshell-supervisor"


class PkiError(RuntimeError):
    """The PKI directory holds something unusable (e.g. a CA key that does not parse)."""


@dataclass(frozen=True)
class Pki:
    """Paths of one gateway's PKI files (all PEM)."""

    root: Path

    ca_cert = property(lambda self: self.root / "ca.crt")
    ca_key = property(lambda self: self.root / "ca.key")
    server_cert = property(lambda self: self.root / "server.crt")
    server_key = property(lambda self: self.root / "server.key")
    client_cert = property(lambda self: self.root / "client.crt")
    client_key = property(lambda self: self.root / "client.key")
    supervisor_cert = property(lambda self: self.root / "supervisor.crt")
    supervisor_key = property(lambda self: self.root / "supervisor.key")


def default_server_names() -> list[str]:
    """Names every server certificate carries: loopback addresses, ``localhost``, the host name."""
    names = ["127.0.0.1", "::1", "localhost"]
    for host in {socket.gethostname(), socket.getfqdn()}:
        if host and host not in names:
            names.append(host)
    return names


def ensure_pki(root: Path, extra_names: Iterable[str] = ()) -> Pki:
    """Create or reuse the PKI under ``root`` and return its paths.

    :param root: the ``pki`` directory (created 0700 if missing).
    :param extra_names: more DNS names or IP addresses for the server certificate
        (e.g. the address the gateway binds when it is not loopback).
    :raises PkiError: an existing CA certificate or key cannot be loaded.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = Pki(root)
    ca_cert, ca_key, ca_new = _ensure_ca(pki)
    names = default_server_names()
    for name in extra_names:
        if name and name not in names and name not in ("0.0.0.0", "::"):
            names.append(name)
    leaves: tuple[tuple[Path, Path, str, list[str], x509.ObjectIdentifier], ...] = (
        (pki.server_cert, pki.server_key, "openshell-gateway", names, ExtendedKeyUsageOID.SERVER_AUTH),
        (pki.client_cert, pki.client_key, USER_CN, [], ExtendedKeyUsageOID.CLIENT_AUTH),
        (pki.supervisor_cert, pki.supervisor_key, SUPERVISOR_CN, [], ExtendedKeyUsageOID.CLIENT_AUTH),
    )
    for cert_path, key_path, cn, sans, usage in leaves:
        if ca_new or not _leaf_usable(cert_path, key_path, ca_cert, sans):
            key = new_key()
            cert = issue_leaf(ca_cert, ca_key, key.public_key(), cn, sans=sans, usage=usage, validity=LEAF_VALIDITY, key_agreement=True)
            write_private(key_path, key_pem(key))
            write_private(cert_path, cert_pem(cert), mode=0o644)
    return pki


def _ensure_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    if pki.ca_cert.exists() and pki.ca_key.exists():
        try:
            cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
            key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        except ValueError as exc:
            raise PkiError(f"cannot load the gateway CA in {pki.root}: {exc}; remove the directory to start over") from exc
        if cert.not_valid_after_utc - now() > RENEW_BEFORE:
            return cert, cast(ec.EllipticCurvePrivateKey, key), False  # make_ca writes an EC key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"OpenShell gateway CA ({socket.gethostname()})")])
    cert, key = make_ca(name, CA_VALIDITY)
    write_private(pki.ca_key, key_pem(key))
    write_private(pki.ca_cert, cert_pem(cert), mode=0o644)
    return cert, key, True


def _leaf_usable(cert_path: Path, key_path: Path, ca_cert: x509.Certificate, sans: Sequence[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    if cert.not_valid_after_utc - now() < RENEW_BEFORE:
        return False
    if sans:
        have = set(certificate_names(cert))
        if not {str(general_name(n).value) for n in sans} <= have:
            return False
    return True


def certificate_names(cert: x509.Certificate) -> list[str]:
    """Return the DNS names and IP addresses (as strings) in ``cert``'s SAN extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


# --------------------------------------------------------------------------- ssl contexts


def server_context(pki: Pki) -> ssl.SSLContext:
    """Return the front's server context: TLS ≥ 1.2, client certificate required and
    verified against our CA (so strangers fail in the handshake), ALPN ``h2``/``http/1.1``.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.set_alpn_protocols(list(ALPN_PROTOCOLS))
    # HTTP/2 over TLS 1.2 forbids renegotiation and compression (RFC 7540 §9.2).
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return ctx


def client_context(
    ca_cert: str | Path,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    alpn: Sequence[str] = ("http/1.1",),
) -> ssl.SSLContext:
    """Return a client context that trusts only ``ca_cert`` and presents ``cert``/``key``.

    Host names are checked (the server certificate names 127.0.0.1 and localhost).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca_cert))
    if cert:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def peer_common_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """Return the CN of the verified peer certificate ('' when there is none)."""
    if ssl_object is None:
        return ""
    cert = ssl_object.getpeercert() or {}
    # typeshed types every value of the dict as one union; "subject" holds RDNs of (key, value) pairs
    for rdn in cast("tuple[tuple[tuple[str, str], ...], ...]", cert.get("subject", ())):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""
