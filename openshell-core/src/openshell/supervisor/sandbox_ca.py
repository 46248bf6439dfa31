"""The per-sandbox certificate authority for the proxy's TLS inspection.

Made for each sandbox start — by the gateway, which sends it with the sandbox's
config over the supervisor's mTLS channel, or else by the supervisor — the
private key stays in memory (it never touches the sandbox filesystem). The
sandbox gets the certificate at ``/etc/openshell-tls/openshell-ca.pem`` and a
combined ``ca-bundle.pem`` (system roots + ours), DESIGN.md §5.

``cryptography`` is imported on first use (the first leaf), not with this module:
its ``x509`` package was ~60 ms of every supervisor start in a container, and a
sandbox that never reaches an inspected endpoint never needs it.
"""

from __future__ import annotations

import collections
import datetime
import os
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover - imported on first use (see above)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
CA_FILE = "openshell-ca.pem"
BUNDLE_FILE = "ca-bundle.pem"
#: where the TLS directory is mounted inside the sandbox
SANDBOX_TLS_DIR = "/etc/openshell-tls"
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY = b"-----BEGIN PRIVATE KEY-----"


class SandboxCA:
    """A CA certificate and its private key, kept in memory as PEM and parsed on first use.

    :param cert_pem: the CA certificate (one PEM block).
    :param key_pem: its private key (PKCS#8 PEM, unencrypted).
    :raises ValueError: either is not PEM of the expected kind (a malformed one
        fails when first parsed: the first inspected connection is refused).
    """

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        if not cert_pem.lstrip().startswith(_PEM_CERT) or cert_pem.count(_PEM_CERT) != 1:
            raise ValueError("sandbox CA: the certificate is not one PEM certificate")
        if not key_pem.lstrip().startswith(_PEM_KEY):
            raise ValueError("sandbox CA: the key is not a PKCS#8 PEM private key")
        self._cert_pem = cert_pem
        self._key_pem = key_pem
        self._cert: Optional[x509.Certificate] = None
        self._key: Optional[ec.EllipticCurvePrivateKey] = None
        self._leaves: Optional[LeafCache] = None
        self._parse_lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return "SandboxCA(<certificate>, <key hidden>)"

    @classmethod
    def generate(cls, sandbox_name: str) -> SandboxCA:
        """Make a fresh CA valid for 10 years, named after the sandbox (imports cryptography)."""
        from openshell import pki

        return cls(*pki.make_sandbox_ca(sandbox_name))

    def _parse(self) -> None:
        with self._parse_lock:
            if self._key is not None:
                return
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            cert = x509.load_pem_x509_certificate(self._cert_pem)
            key = serialization.load_pem_private_key(self._key_pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("sandbox CA: the key is not an EC key")
            self._cert, self._key = cert, key

    @property
    def cert(self) -> x509.Certificate:
        """The CA certificate (parsed on first use)."""
        if self._cert is None:
            self._parse()
        assert self._cert is not None
        return self._cert

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        """The CA's private key (parsed on first use; never leaves this process)."""
        if self._key is None:
            self._parse()
        assert self._key is not None
        return self._key

    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (public; safe to hand to the sandbox)."""
        return self._cert_pem

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a leaf certificate for ``host`` (POLICY.md §3).

        Leaves are issued on first use and kept in a bounded LRU cache
        (``LeafCache``, ``LEAF_CACHE_SIZE`` hosts); see ``LeafCache.get``.

        :param host: DNS name (lower case) or IP literal the sandbox connected to.
        :returns: an ``ssl.SSLContext`` (TLS ≥ 1.2, ALPN ``http/1.1`` only).
        """
        if self._leaves is None:
            self._leaves = LeafCache(self)
        return self._leaves.get(host)

    def issue_leaf(self, host: str, public_key: ec.EllipticCurvePublicKey, *, days: int = 30) -> x509.Certificate:
        """Sign a server certificate for ``host`` (SAN = DNS name or IP address).

        :param host: DNS name or IP literal (IPv6 without brackets).
        :param public_key: the leaf's public key.
        :param days: validity from now (the certificate is back-dated 5 minutes).
        :raises ValueError: for an empty host.
        """
        if not host:
            raise ValueError("cannot issue a certificate for an empty host")
        from openshell import pki

        return pki.issue_leaf(self.cert, self.key, public_key, host, sans=[host], validity=datetime.timedelta(days=days))

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


#: hosts whose leaf contexts are kept (least recently used evicted beyond this)
LEAF_CACHE_SIZE = 256


class LeafCache:
    """Bounded LRU cache ``host → ssl.SSLContext`` for one sandbox CA. Thread-safe.

    All leaves share one EC P-256 key made when the cache is created; it lives in
    supervisor memory only. ``ssl`` can load a key only from a path, so the PEM
    goes through an anonymous memory file (``memfd_create``, read through
    ``/proc/self/fd``) that is closed right after loading: nothing is written to
    any filesystem, and nothing of it is ever visible inside the sandbox.

    :param ca: the issuing CA.
    :param size: maximum number of hosts kept.
    """

    def __init__(self, ca: SandboxCA, size: int = LEAF_CACHE_SIZE) -> None:
        from openshell import pki

        self.ca = ca
        self.size = size
        self._key = pki.new_key()
        self._cache: collections.OrderedDict[str, ssl.SSLContext] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, host: str) -> ssl.SSLContext:
        """The server context for ``host``, issuing a leaf on a miss (about 1 ms)."""
        with self._lock:
            ctx = self._cache.get(host)
            if ctx is not None:
                self._cache.move_to_end(host)
                return ctx
        ctx = self._make(host)
        with self._lock:
            self._cache[host] = ctx
            self._cache.move_to_end(host)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return ctx

    def _make(self, host: str) -> ssl.SSLContext:
        from openshell import pki

        cert = self.ca.issue_leaf(host, self._key.public_key())
        return pki.server_context(pki.cert_pem(cert) + self.ca.cert_pem() + pki.key_pem(self._key))


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
