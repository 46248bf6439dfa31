"""The gateway process: state, PKI, compute driver, gRPC server and the TLS front.

Start order (:meth:`Gateway.start`): lock the pid file (one gateway per state
directory) → PKI → bind the TCP port → compute driver → store/``GatewayCore`` →
gRPC server on ``<state>/grpc.sock`` (a private temp directory when that path is
too long for a unix socket) → TLS front accepts → ``gateway_started`` hook.
The front's ``/connect/ssh`` route is :class:`openshell.gateway.connect_ssh.ConnectSshHandler`
(SSH tunnels to sandboxes), registered once the core exists.
Stop order is the reverse; supervisors are *not* stopped — sandboxes outlive a
gateway restart and the next gateway finds them through the driver.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import shutil
import signal
import tempfile
import time
from typing import Any

import grpc

from openshell.gateway import connect_ssh
from openshell.gateway.core import GatewayCore
from openshell.gateway.front import Front, PortInUseError
from openshell.gateway.paths import (
    DEFAULT_DRIVER,
    DEFAULT_HOST,
    DEFAULT_NAME,
    DEFAULT_PORT,
    GatewayPaths,
    GatewaySettings,
    gateway_paths,
    write_settings,
)
from openshell.gateway.service import add_services
from openshell.gateway.store import Store
from openshell.gateway.tls import Pki, ensure_pki, server_context
from openshell.gateway.versions import VersionHeader
from openshell.plugin.events import GatewayEvent
from openshell.plugin.kinds import DriverContext
from openshell.plugin.loader import get_registry

log = logging.getLogger("openshell.gateway")

#: sun_path is 108 bytes on Linux, including the terminating NUL
MAX_UNIX_PATH = 107
#: seconds in-flight RPCs get at shutdown before they are cancelled
STOP_GRACE = 5.0


#: Every request is read whole into memory before a handler sees it, so the
#: receive size is the gateway's memory bound per call. 4 MiB holds a policy
#: (at most 1 MiB, see openshell.policy.yamlio) plus the rest of a spec, and
#: stdin chunks; set explicitly so a library default cannot raise it.
GRPC_MAX_RECEIVE_BYTES = 4 << 20
GRPC_SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", GRPC_MAX_RECEIVE_BYTES),
    ("grpc.max_metadata_size", 16 << 10),
)


class GatewayError(RuntimeError):
    """The gateway cannot start; the message names the cause and the fix."""


class GatewayAlreadyRunning(GatewayError):
    """Another gateway process holds this state directory."""

    def __init__(self, paths: GatewayPaths, pid: int | None) -> None:
        super().__init__(f"a gateway is already running from {paths.root} (pid {pid or '?'})")
        self.pid = pid


class Gateway:
    """One gateway: ``await gw.start()`` … ``await gw.stop()``, or ``await gw.run()``.

    :param name: the gateway's name (state directory and client files are keyed by it).
    :param host, port: the TCP address of the front (``port=0`` picks a free one).
    :param driver: compute driver name, looked up in the plugin registry.
    :param state_dir: explicit state directory (else ``$OPENSHELL_STATE_DIR`` or XDG).

    Attributes after :meth:`start`: ``paths``, ``pki``, ``front``, ``grpc_server``,
    ``driver`` (a ``ComputeDriver``), ``store`` and ``core`` (the ``GatewayCore``).
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        driver: str = DEFAULT_DRIVER,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.driver_name = driver
        self.paths: GatewayPaths = gateway_paths(name, state_dir)
        self.pki: Pki | None = None
        self.front: Front | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.driver: Any = None
        self.core: Any = None
        self.store: Any = None
        #: the gRPC server's unix socket (``<state>/grpc.sock`` unless that path is too long)
        self.grpc_socket = ""
        self._socket_tmpdir = ""
        self._lock_fd: int | None = None
        self._stopping: asyncio.Event | None = None
        self.started_at = 0.0

    @property
    def settings(self) -> GatewaySettings:
        return GatewaySettings(self.name, self.host, self.port, self.driver_name)

    @property
    def endpoint(self) -> str:
        """``https://host:port`` clients and supervisors dial (actual port once started)."""
        return self.settings.endpoint

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bring the gateway up; on failure everything started so far is undone.

        :raises GatewayAlreadyRunning: another gateway uses this state directory.
        :raises PortInUseError: the TCP port is taken (message names ``--port``).
        :raises GatewayError: any other reason it cannot serve.
        """
        self.paths.ensure()
        self._lock()
        try:
            sock = self._socket_path()
            self.pki = await asyncio.to_thread(ensure_pki, self.paths.pki, [self.host])
            # Bind first: a busy port fails fast, and port=0 is resolved before the
            # driver is told the endpoint supervisors dial.
            self.front = Front(server_context(self.pki), sock, self.host, self.port)
            await self.front.bind()
            self.port = self.front.port
            self.driver = make_driver(self.driver_name, self)
            version_header = VersionHeader()  # clients learn our version from any answer
            self.grpc_server = grpc.aio.server(interceptors=[version_header], options=GRPC_SERVER_OPTIONS)
            self.core = attach_services(self.grpc_server, self)
            version_header.version = self.core.version
            self.core.gateway_endpoint = self.endpoint  # CreateSshSession reports it
            connect_ssh.install(self.front, self.core)  # CONNECT /connect/ssh
            if os.path.exists(sock):  # left by a crashed gateway; we hold the lock
                os.unlink(sock)
            try:
                self.grpc_server.add_insecure_port(f"unix:{sock}")
            except RuntimeError as exc:
                raise GatewayError(f"cannot listen on {sock}: {exc}") from exc
            await self.grpc_server.start()
            os.chmod(sock, 0o600)
            await self.core.start()  # reconciles sandboxes that outlived the last gateway
            await self.front.start()
            write_settings(self.paths, self.settings)
        except BaseException:
            await self._teardown(grace=0)
            raise
        self.started_at = time.time()
        log.info("gateway started name=%s endpoint=%s driver=%s state=%s pid=%d", self.name, self.endpoint, self.driver_name, self.paths.root, os.getpid())
        _fire_gateway_started(self)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop serving: close the port, let RPCs finish for ``grace`` seconds, release the state.

        Supervisors keep running (sandboxes survive a gateway restart).
        """
        log.info("gateway stopping name=%s", self.name)
        await self._teardown(grace)
        log.info("gateway stopped name=%s", self.name)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or :meth:`request_stop`), then stop."""
        self._stopping = asyncio.Event()
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self._stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        if self._stopping is not None:
            self._stopping.set()

    async def _teardown(self, grace: float) -> None:
        if self.front is not None:
            self.front.stop_accepting()
        if self.grpc_server is not None:
            # grpc sends GOAWAY through the front's relays, then closes them
            await self.grpc_server.stop(grace)
            self.grpc_server = None
        if self.front is not None:
            await self.front.close(grace=min(grace, 1.0))
            self.front = None
        if self.core is not None:
            try:
                await self.core.stop()
            except Exception:  # noqa: BLE001 - shutdown continues
                log.exception("core stop failed")
        for obj in (self.store, self.driver):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - shutdown continues
                    log.exception("close failed obj=%r", obj)
        self.core = self.store = self.driver = None
        if self.grpc_socket:
            try:
                os.unlink(self.grpc_socket)
            except OSError:
                pass
            if self._socket_tmpdir:
                shutil.rmtree(self._socket_tmpdir, ignore_errors=True)
            self.grpc_socket = self._socket_tmpdir = ""
        self._unlock()

    def _socket_path(self) -> str:
        path = str(self.paths.grpc_sock)
        if len(path.encode()) <= MAX_UNIX_PATH:
            self.grpc_socket = path
            return path
        # sun_path cannot hold it: use a fresh private (0700) directory under the
        # temp dir instead. Only this process dials the socket, so its place
        # does not matter as long as nobody else can reach it.
        self._socket_tmpdir = tempfile.mkdtemp(prefix="openshell-gw-")
        self.grpc_socket = os.path.join(self._socket_tmpdir, "grpc.sock")
        log.info("state path too long for a unix socket; grpc socket=%s", self.grpc_socket)
        return self.grpc_socket

    # ------------------------------------------------------------------ pid file

    def _lock(self) -> None:
        # The pid file is also the instance lock: flock dies with the process, so a
        # crashed gateway never leaves a lock that blocks the next start.
        fd = os.open(self.paths.pid, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise GatewayAlreadyRunning(self.paths, read_pid(self.paths)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fchmod(fd, 0o600)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self.paths.pid.unlink()
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None


def read_pid(paths: GatewayPaths) -> int | None:
    """Return the pid in ``gateway.pid`` if a live gateway holds it, else None.

    A pid file without a lock holder is stale (the process died); it is ignored.
    """
    try:
        fd = os.open(paths.pid, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            held = True  # somebody holds it: a live gateway
        else:
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        text = os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if not held or not text.isdigit():
        return None
    return int(text)


# --------------------------------------------------------------------------- integration points


def make_driver(name: str, gateway: Gateway) -> Any:
    """Construct compute driver ``name`` as ``cls(DriverContext(...))``.

    :raises GatewayError: the driver is not installed or failed to load.
    """
    try:
        cls = get_registry().require("drivers", name)
    except Exception as exc:  # PluginNotFound / PluginLoadError: messages name the fix
        raise GatewayError(f"compute driver {name!r}: {exc}") from exc
    pki = gateway.pki
    assert pki is not None
    ctx = DriverContext(
        state_dir=str(gateway.paths.root),
        gateway_endpoint=gateway.endpoint,
        ca_cert=str(pki.ca_cert),
        client_cert=str(pki.supervisor_cert),
        client_key=str(pki.supervisor_key),
    )
    return cls(ctx)


def attach_services(server: grpc.aio.Server, gateway: Gateway) -> GatewayCore:
    """Open the store, build the ``GatewayCore`` and add every gRPC service to ``server``.

    Also adds a minimal ``grpc.health.v1.Health/Check`` (SERVING) for gRPC liveness probes.

    :returns: the core (not started yet).
    """
    server.add_generic_rpc_handlers((_health_handler(),))
    gateway.store = Store(gateway.paths.db)
    core = GatewayCore(gateway.paths.root, gateway.store, gateway.driver)
    add_services(server, core)
    return core


def _health_handler() -> grpc.GenericRpcHandler:
    # HealthCheckResponse{status: SERVING(1)} encoded by hand: field 1, varint 1.
    # Saves a grpcio-health-checking dependency for one constant message.
    serving = b"\x08\x01"

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return serving

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=None, response_serializer=None)},
    )


def _fire_gateway_started(gateway: Gateway) -> None:
    try:
        event = GatewayEvent(
            name=gateway.name,
            endpoint=gateway.endpoint,
            port=gateway.port,
            driver=gateway.driver_name,
            state_dir=str(gateway.paths.root),
            started_at=gateway.started_at,
        )
        get_registry().hook.gateway_started(gateway=event)
    except Exception:  # noqa: BLE001 - an event hook never takes the gateway down
        log.exception("gateway_started hook failed")


# --------------------------------------------------------------------------- logging


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg="…"`` lines (messages already carry key=value pairs)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        msg = record.getMessage().replace("\n", "\\n")
        line = f"ts={ts} level={record.levelname} logger={record.name} msg={msg}"
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).replace("\n", "\\n")
        return line


def configure_logging(log_path: os.PathLike[str] | str, level: int = logging.INFO, to_stderr: bool = False) -> None:
    """Send the ``openshell`` loggers to ``log_path`` (append, 0600), optionally also to stderr."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handlers: list[logging.Handler] = [logging.FileHandler(log_path)]
    if to_stderr:
        handlers.append(logging.StreamHandler())
    root = logging.getLogger("openshell")
    root.setLevel(level)
    for handler in handlers:
        handler.setFormatter(KeyValueFormatter())
        root.addHandler(handler)


__all__ = [
    "Gateway",
    "GatewayAlreadyRunning",
    "GatewayError",
    "PortInUseError",
    "attach_services",
    "configure_logging",
    "make_driver",
    "read_pid",
]
