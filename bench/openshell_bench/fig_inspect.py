"""Figure 3: HTTP inspection — requests/s on one kept-alive HTTPS connection.

The test host serves HTTPS with a certificate from a CA made for the run
(``cryptography``); nothing disables verification anywhere.

- ``direct``: the client straight to the test host (TLS end to end);
- ``openshell raw tunnel``: through the sandbox proxy with an L4 rule (TLS end
  to end inside the tunnel);
- ``openshell inspected``: through the sandbox proxy with ``protocol: rest``
  (TLS terminated with the sandbox CA, each request decided, re-encrypted to
  the upstream, which the supervisor verifies against the run's CA passed as
  ``OPENSHELL_EXTRA_CA``). Skipped with the proxy's own reason while the proxy
  has no inspector;
- ``mitmproxy``: TLS interception, upstream verified against the run's CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from openshell_bench import env
from openshell_bench.context import Context
from openshell_bench.peers import Peer
from openshell_bench.results import FigureResult, Skip

SANDBOX_BUNDLE = "@/etc/openshell-tls/ca-bundle.pem"


def make_tls(dirpath: Path, host: str, ip: str) -> tuple[str, str, str]:
    """A CA and a server certificate for ``host`` and ``ip``; ``(ca_pem_path, cert_path, key_path)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openshell bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host), x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = dirpath / "ca.pem", dirpath / "server.pem", dirpath / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def _rps(out: dict) -> float:
    return out["requests"] / out["seconds"]


def inspection(ctx: Context) -> FigureResult:
    """Measure the inspection figure (see module docstring)."""
    env.require_root()
    n = ctx.sizes.https_requests
    fig = FigureResult(f"HTTP inspection: {n} GETs on one kept-alive HTTPS connection")
    metric = "requests/s (keep-alive)"
    host = env.HOST_NAME
    port = env.UPSTREAM_PORT
    with env.tempdir("osbench-tls-") as tmp:
        tmp.chmod(0o755)
        ip = "10.199.51.2"
        ca_path, cert, key = make_tls(tmp, host, ip)
        ca_pem = Path(ca_path).read_text()
        with env.test_host(1, tls=(cert, key)) as up:
            assert up.ip == ip
            out = env.host_client("https", "-", ip, port, host, ca_pem, n)
            fig.add("direct", metric, _rps(out), "req/s")
            with env.BenchGateway(extra_env={"OPENSHELL_EXTRA_CA": ca_path}) as gw:
                hosts = [f"{host}:{ip}"]
                gw.create("bench-raw", env.network_policy(ip), hosts)
                try:
                    out = env.sandbox_client(gw, "bench-raw", "https", host, port, host, ca_pem, n)
                    fig.add("openshell raw tunnel", metric, _rps(out), "req/s", note="TLS end to end, L4 rule")
                except RuntimeError as exc:
                    fig.skip_row("openshell raw tunnel", metric, "req/s", str(exc)[:200])
                gw.create("bench-l7", env.network_policy(ip, rest=True), hosts)
                try:
                    env.sandbox_client(gw, "bench-l7", "https", host, port, host, SANDBOX_BUNDLE, 1)
                except RuntimeError as exc:
                    fig.skip_row("openshell inspected", metric, "req/s", f"inspection not available in this tree: {str(exc)[-220:]}")
                else:
                    out = env.sandbox_client(gw, "bench-l7", "https", host, port, host, SANDBOX_BUNDLE, n)
                    fig.add("openshell inspected", metric, _rps(out), "req/s", note="TLS terminated, every request decided")
            if "mitmproxy" in ctx.peers:
                try:
                    with Peer("mitmproxy_intercept", upstream_ca=ca_path) as peer:
                        mitm_ca = Path(peer.ca_file).read_text()
                        out = env.host_client("https", peer.address, ip, port, host, mitm_ca, n)
                        fig.add("mitmproxy", metric, _rps(out), "req/s", note="TLS interception")
                except (Skip, RuntimeError) as exc:
                    fig.skip_row("mitmproxy", metric, "req/s", str(exc)[:200])
    fig.relate("direct")
    return fig
