"""The per-sandbox certificate authority for the proxy's TLS inspection.

Made at sandbox start; the private key stays in the supervisor's memory (and
never touches the sandbox filesystem). The sandbox gets the certificate at
``/etc/openshell-tls/openshell-ca.pem`` and a combined ``ca-bundle.pem``
(system roots + ours), DESIGN.md §5.
"""

from __future__ import annotations

import collections
import datetime
import os
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from openshell import pki

SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
CA_FILE = "openshell-ca.pem"
BUNDLE_FILE = "ca-bundle.pem"
#: where the TLS directory is mounted inside the sandbox
SANDBOX_TLS_DIR = "/etc/openshell-tls"
#: a sandbox CA outlives any sandbox; it is made anew at each sandbox start
CA_VALIDITY = datetime.timedelta(days=3650)


@dataclass
class SandboxCA:
    """A CA certificate and its private key (kept in memory)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    _leaves: "LeafCache | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def generate(cls, sandbox_name: str) -> "SandboxCA":
        """Make a fresh CA valid for 10 years, named after the sandbox."""
        name = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OpenShell"), x509.NameAttribute(NameOID.COMMON_NAME, f"OpenShell sandbox CA {sandbox_name}"[:64])]
        )
        cert, key = pki.make_ca(name, CA_VALIDITY)
        return cls(cert, key)

    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (public; safe to hand to the sandbox)."""
        return pki.cert_pem(self.cert)

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
