"""X.509 for OpenShell: EC P-256 keys, CA certificates, leaves, TLS server contexts.

One place builds every certificate: the gateway's PKI (:mod:`openshell.gateway.tls`:
CA, server and client leaves on disk), the per-sandbox CA of the proxy's TLS
inspection (:mod:`openshell.supervisor.sandbox_ca`: leaves in memory) and the
inference router's ``inference.local`` leaf. Files are the callers' business
(the gateway writes keys 0600); nothing here touches a filesystem.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: certificates start this much before "now", so a peer's slightly slow clock accepts them
BACKDATE = dt.timedelta(minutes=5)


def now() -> dt.datetime:
    """The current time (UTC, timezone-aware)."""
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM (keep it in memory or in a 0600 file)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    """``cert`` as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def general_name(name: str) -> x509.GeneralName:
    """A SAN entry: an IP address for an IP literal (IPv6 without brackets), else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_usage(*, ca: bool, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(subject: x509.Name, validity: dt.timedelta) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA (path length 0: it signs leaves only) with a new key.

    :param subject: its name (also the issuer).
    :param validity: how long from now it is valid (it starts :data:`BACKDATE` earlier).
    :returns: ``(certificate, private key)``.
    """
    key = new_key()
    start = now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


#: a sandbox CA outlives any sandbox; it is made anew at each sandbox start
SANDBOX_CA_VALIDITY = dt.timedelta(days=3650)


def make_sandbox_ca(sandbox_name: str) -> tuple[bytes, bytes]:
    """A sandbox's CA for TLS inspection (DESIGN.md §5): ``(certificate PEM, key PEM)``,
    named after the sandbox, valid 10 years. Made by the gateway for each supervisor
    start (``GetSandboxConfig``), or by the supervisor itself when the gateway sent none."""
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OpenShell"), x509.NameAttribute(NameOID.COMMON_NAME, f"OpenShell sandbox CA {sandbox_name}"[:64])]
    )
    cert, key = make_ca(name, SANDBOX_CA_VALIDITY)
    return cert_pem(cert), key_pem(key)


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    *,
    sans: Sequence[str] = (),
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
    validity: dt.timedelta,
    key_agreement: bool = False,
) -> x509.Certificate:
    """Sign a leaf certificate for ``public_key`` with the CA.

    :param common_name: its CN (cut to 64 characters, the X.509 limit).
    :param sans: DNS names and IP literals for the SAN extension (none: no extension).
    :param usage: the extended key usage (server or client authentication).
    :param validity: how long from now; never past the CA's own end.
    :param key_agreement: also allow key agreement in the key usage (the gateway's
        leaves set it; the sandbox leaves do not).
    """
    start = now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(min(start + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, key_agreement=key_agreement), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([general_name(n) for n in sans]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def server_context(chain_pem: bytes) -> ssl.SSLContext:
    """A TLS server context (TLS ≥ 1.2, ALPN ``http/1.1`` only) from PEM bytes:
    leaf certificate, optional intermediates, then the private key.

    ``ssl`` loads a key only from a path, so the PEM goes through an anonymous
    memory file (``memfd_create``, read through ``/proc/self/fd``) closed right
    after loading: nothing is written to any filesystem.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("openshell-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, chain_pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return ctx
    # Fallback (no memfd): a private file that exists only while loading.
    with tempfile.NamedTemporaryFile(prefix="openshell-leaf-", mode="wb") as f:  # 0600 by default
        f.write(chain_pem)
        f.flush()
        ctx.load_cert_chain(f.name)
    return ctx
