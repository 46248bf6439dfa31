"""The per-sandbox certificate authority for the proxy's TLS inspection.

Made at sandbox start; the private key stays in the supervisor's memory (and
never touches the sandbox filesystem). The sandbox gets the certificate at
``/etc/openshell-tls/openshell-ca.pem`` and a combined ``ca-bundle.pem``
(system roots + ours), DESIGN.md §5.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
CA_FILE = "openshell-ca.pem"
BUNDLE_FILE = "ca-bundle.pem"
#: where the TLS directory is mounted inside the sandbox
SANDBOX_TLS_DIR = "/etc/openshell-tls"


@dataclass
class SandboxCA:
    """A CA certificate and its private key (kept in memory)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, sandbox_name: str) -> "SandboxCA":
        """Make a fresh CA valid for 10 years, named after the sandbox."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OpenShell"), x509.NameAttribute(NameOID.COMMON_NAME, f"OpenShell sandbox CA {sandbox_name}"[:64])])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write_public_files(self, tls_dir: Path) -> None:
        """Write ``openshell-ca.pem`` and ``ca-bundle.pem`` (world-readable; no key)."""
        tls_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(tls_dir, 0o755)
        ours = self.cert_pem()
        system = b""
        for path in SYSTEM_BUNDLES:
            try:
                system = Path(path).read_bytes()
                break
            except OSError:
                continue
        for fname, data in ((CA_FILE, ours), (BUNDLE_FILE, system.rstrip(b"\n") + b"\n" + ours if system else ours)):
            p = tls_dir / fname
            p.write_bytes(data)
            os.chmod(p, 0o644)


def ca_environment() -> dict[str, str]:
    """Variables that make common TLS stacks trust the sandbox CA (DESIGN.md §5)."""
    bundle = f"{SANDBOX_TLS_DIR}/{BUNDLE_FILE}"
    return {
        "SSL_CERT_FILE": bundle,
        "REQUESTS_CA_BUNDLE": bundle,
        "CURL_CA_BUNDLE": bundle,
        "GIT_SSL_CAINFO": bundle,
        "NODE_EXTRA_CA_CERTS": f"{SANDBOX_TLS_DIR}/{CA_FILE}",
    }
