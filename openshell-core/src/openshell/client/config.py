"""Client configuration files: which gateway to talk to and how (DESIGN.md §4).

The published OpenShell SDK (``openshell==0.1.5``) reads the same files
(docs/sdk-compat.md)::

    $XDG_CONFIG_HOME/openshell/                  (~/.config when unset), mode 0700
      active_gateway                             the active gateway's name
      gateways/<name>/metadata.json              {"gateway_endpoint": "https://127.0.0.1:8080",
                                                  "auth_mode": "mtls", ...}
      gateways/<name>/mtls/ca.crt                the gateway's CA
      gateways/<name>/mtls/tls.crt, tls.key      the user's client certificate (key 0600)

``$OPENSHELL_GATEWAY`` overrides the active name.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openshell.gateway.paths import check_name, write_private

ENV_GATEWAY = "OPENSHELL_GATEWAY"


class GatewayConfigError(RuntimeError):
    """The client configuration is missing or unusable; the message says what to run."""


@dataclass(frozen=True)
class GatewayConfig:
    """One configured gateway as the client sees it.

    :ivar endpoint: ``https://host:port``.
    :ivar ca_path, cert_path, key_path: PEM files under ``gateways/<name>/mtls/``.
    :ivar metadata: the whole ``metadata.json`` object.
    """

    name: str
    endpoint: str
    ca_path: Path
    cert_path: Path
    key_path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """Host part of the endpoint (no brackets for IPv6)."""
        return urlsplit(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """Port of the endpoint (443 for https when absent, as the SDK does)."""
        split = urlsplit(self.endpoint)
        return split.port or (443 if split.scheme == "https" else 80)

    @property
    def target(self) -> str:
        """The gRPC target ``host:port`` (the SDK dials exactly this)."""
        host = self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def ssl_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        """Return an ``ssl`` client context for the gateway's HTTP side (``/healthz``, ``/connect/ssh``)."""
        from openshell.gateway.tls import client_context  # deferred: cryptography stays off the CLI's start-up

        return client_context(self.ca_path, self.cert_path, self.key_path, alpn=alpn)

    def grpc_credentials(self) -> Any:
        """Return ``grpc.ChannelCredentials`` for mTLS to the gateway (what the SDK builds)."""
        import grpc  # deferred: only gRPC callers pay for importing grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_path.read_bytes(),
            private_key=self.key_path.read_bytes(),
            certificate_chain=self.cert_path.read_bytes(),
        )


def config_root() -> Path:
    """Return ``$XDG_CONFIG_HOME/openshell`` (``~/.config/openshell`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "openshell"


def gateway_dir(name: str) -> Path:
    """Return ``<config root>/gateways/<name>`` (not created)."""
    return config_root() / "gateways" / check_name(name)


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_gateway_config(
    name: str,
    endpoint: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    **metadata: Any,
) -> GatewayConfig:
    """Write (or overwrite) the client files of gateway ``name``; does not change the active gateway.

    :param endpoint: ``https://host:port``.
    :param ca_pem, cert_pem, key_pem: PEM bytes of the CA, the client certificate and its key.
    :param metadata: extra keys for ``metadata.json`` (e.g. ``state_dir``); ``gateway_endpoint``,
        ``auth_mode`` and ``name`` are always set by this function.
    :returns: the written configuration.
    """
    gdir = gateway_dir(name)
    mtls = gdir / "mtls"
    for d in (config_root(), gdir.parent, gdir, mtls):
        _mkdir_private(d)
    write_private(mtls / "ca.crt", ca_pem, mode=0o644)
    write_private(mtls / "tls.crt", cert_pem, mode=0o644)
    write_private(mtls / "tls.key", key_pem, mode=0o600)
    meta = {**metadata, "name": name, "gateway_endpoint": endpoint, "auth_mode": "mtls"}
    write_private(gdir / "metadata.json", (json.dumps(meta, indent=2) + "\n").encode(), mode=0o644)
    return GatewayConfig(name, endpoint, mtls / "ca.crt", mtls / "tls.crt", mtls / "tls.key", meta)


def active_name() -> str | None:
    """Return ``$OPENSHELL_GATEWAY``, else the content of ``active_gateway``, else None."""
    env = os.environ.get(ENV_GATEWAY, "").strip()
    if env:
        return env
    try:
        return (config_root() / "active_gateway").read_text().strip() or None
    except OSError:
        return None


def set_active(name: str) -> None:
    """Make ``name`` the active gateway.

    :raises GatewayConfigError: ``name`` has no configuration.
    """
    if not (gateway_dir(name) / "metadata.json").is_file():
        raise GatewayConfigError(f"gateway {name!r} is not configured; see 'openshell gateway list'")
    _mkdir_private(config_root())
    write_private(config_root() / "active_gateway", (name + "\n").encode(), mode=0o644)


def load_gateway_config(name: str | None = None) -> GatewayConfig:
    """Return the configuration of gateway ``name`` (default: the active one).

    :raises GatewayConfigError: no gateway is configured/active, or its files are missing
        or malformed; the message names the fix.
    """
    name = name or active_name()
    if not name:
        raise GatewayConfigError("no gateway configured; run 'openshell gateway start'")
    gdir = gateway_dir(name)
    meta_path = gdir / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise GatewayConfigError(f"gateway {name!r} is not configured; run 'openshell gateway start --name {name}'") from None
    except (OSError, ValueError) as exc:
        raise GatewayConfigError(f"cannot read {meta_path}: {exc}") from None
    endpoint = meta.get("gateway_endpoint") if isinstance(meta, dict) else None
    if not endpoint:
        raise GatewayConfigError(f"{meta_path} has no gateway_endpoint; run 'openshell gateway start --name {name}'")
    mtls = gdir / "mtls"
    cfg = GatewayConfig(name, str(endpoint), mtls / "ca.crt", mtls / "tls.crt", mtls / "tls.key", meta)
    missing = [p.name for p in (cfg.ca_path, cfg.cert_path, cfg.key_path) if not p.is_file()]
    if missing:
        raise GatewayConfigError(f"gateway {name!r} is missing {', '.join(missing)} in {mtls}; run 'openshell gateway start --name {name}'")
    return cfg


def list_gateways() -> list[str]:
    """Return the names of configured gateways, sorted."""
    root = config_root() / "gateways"
    try:
        return sorted(p.name for p in root.iterdir() if (p / "metadata.json").is_file())
    except OSError:
        return []


def remove_gateway_config(name: str) -> bool:
    """Delete gateway ``name``'s client files; clear ``active_gateway`` if it named it.

    :returns: True when something was removed.
    """
    gdir = gateway_dir(name)
    existed = gdir.exists()
    shutil.rmtree(gdir, ignore_errors=True)
    active = config_root() / "active_gateway"
    try:
        if active.read_text().strip() == name:
            active.unlink()
    except OSError:
        pass
    return existed
