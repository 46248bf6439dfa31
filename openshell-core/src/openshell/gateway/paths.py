"""Where one gateway keeps its state (DESIGN.md §4).

One directory per gateway, mode 0700::

    $OPENSHELL_STATE_DIR                       (when set), else
    $XDG_STATE_HOME/openshell/gateways/<name>  (XDG_STATE_HOME defaults to ~/.local/state)
      gateway.db      the store (SQLite, WAL)
      gateway.json    how the gateway was last started (host, port, driver)
      gateway.log     the gateway's log
      gateway.pid     pid of the running gateway; flock-ed by it while it runs
      grpc.sock       the gRPC server behind the TLS front (0600)
      pki/            ca.crt ca.key server.* client.* supervisor.* (keys 0600)
      sandboxes/      the compute driver's per-sandbox directories
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_NAME = "openshell"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DRIVER = "local"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class InvalidGatewayName(ValueError):
    """A gateway name that cannot be a directory name."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid gateway name, else raise :class:`InvalidGatewayName`.

    Valid: 1–63 characters of letters, digits, ``.``, ``_``, ``-``, starting with a
    letter or digit (it becomes a directory name, so no ``/`` or ``..``).
    """
    if not _NAME_RE.match(name or ""):
        raise InvalidGatewayName(f"invalid gateway name {name!r}; use letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)")
    return name


def state_root() -> Path:
    """Return ``$XDG_STATE_HOME/openshell/gateways`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "openshell" / "gateways"


def state_dir_for(name: str, override: str | os.PathLike[str] | None = None) -> Path:
    """Return the state directory of gateway ``name`` (not created).

    :param override: an explicit directory (``--state-dir``); wins over everything.
    Otherwise ``$OPENSHELL_STATE_DIR`` wins over the XDG location.
    """
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get("OPENSHELL_STATE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    return state_root() / check_name(name)


@dataclass(frozen=True)
class GatewayPaths:
    """The files of one gateway's state directory (see the module docstring)."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "gateway.db"

    @property
    def settings(self) -> Path:
        return self.root / "gateway.json"

    @property
    def log(self) -> Path:
        return self.root / "gateway.log"

    @property
    def pid(self) -> Path:
        return self.root / "gateway.pid"

    @property
    def grpc_sock(self) -> Path:
        return self.root / "grpc.sock"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def sandboxes(self) -> Path:
        return self.root / "sandboxes"

    def ensure(self) -> GatewayPaths:
        """Create the directory tree with mode 0700 (fixing looser modes); return self."""
        for d in (self.root, self.pki, self.sandboxes):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask and ignored for existing
            # directories; the state holds private keys, so force it.
            os.chmod(d, 0o700)
        return self


def gateway_paths(name: str = DEFAULT_NAME, state_dir: str | os.PathLike[str] | None = None) -> GatewayPaths:
    """Return the :class:`GatewayPaths` of gateway ``name`` (nothing is created)."""
    return GatewayPaths(state_dir_for(name, state_dir))


@dataclass(frozen=True)
class GatewaySettings:
    """How a gateway was last started; kept in ``gateway.json`` so a restart and
    ``openshell gateway info`` know the port and driver without flags."""

    name: str = DEFAULT_NAME
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    driver: str = DEFAULT_DRIVER

    @property
    def endpoint(self) -> str:
        """The URL clients dial, e.g. ``https://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def read_settings(paths: GatewayPaths) -> GatewaySettings | None:
    """Return the saved settings, or None when the gateway never started (or the file is unreadable)."""
    try:
        data = json.loads(paths.settings.read_text())
        return GatewaySettings(
            name=str(data.get("name", DEFAULT_NAME)),
            host=str(data.get("host", DEFAULT_HOST)),
            port=int(data.get("port", DEFAULT_PORT)),
            driver=str(data.get("driver", DEFAULT_DRIVER)),
        )
    except (OSError, ValueError, TypeError):
        return None


def write_settings(paths: GatewayPaths, settings: GatewaySettings) -> None:
    """Save ``settings`` atomically (mode 0600)."""
    write_private(paths.settings, (json.dumps(asdict(settings), indent=2) + "\n").encode())


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` from the first byte on.

    The file is created under a temporary name with ``mode`` (so a key is never
    readable by others, not even briefly) and renamed over ``path``.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # O_CREAT's mode went through the umask
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
