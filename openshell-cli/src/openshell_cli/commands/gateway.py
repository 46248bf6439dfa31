"""``openshell gateway …``: start, stop, status, info, list, select, destroy.

A local gateway runs as ``python -m openshell.gateway`` in its own session, so it
outlives the CLI; its state directory (``openshell.gateway.paths``) holds the pid
file, log and PKI. Starting one also writes the client files
(``openshell.client.config``) and makes it the active gateway.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import click
from openshell.client.config import (
    GatewayConfig,
    GatewayConfigError,
    active_name,
    list_gateways,
    load_gateway_config,
    remove_gateway_config,
    set_active,
    write_gateway_config,
)
from openshell.gateway.paths import (
    DEFAULT_DRIVER,
    DEFAULT_NAME,
    DEFAULT_PORT,
    GatewayPaths,
    GatewaySettings,
    InvalidGatewayName,
    check_name,
    gateway_paths,
    read_settings,
)

from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render

START_TIMEOUT = 30.0  # seconds `gateway start` waits for /healthz
STOP_TIMEOUT = 15.0  # seconds `gateway stop` waits after SIGTERM before SIGKILL
HEALTH_TIMEOUT = 2.0  # seconds for one /healthz probe


# --------------------------------------------------------------------------- helpers (no click)


def local_paths(name: str) -> GatewayPaths:
    """Return the state directory of local gateway ``name``.

    ``$OPENSHELL_STATE_DIR`` wins; else the ``state_dir`` its client metadata
    recorded at start (so ``stop`` finds a gateway started with another
    environment); else the XDG location.
    """
    if os.environ.get("OPENSHELL_STATE_DIR"):
        return gateway_paths(name)
    try:
        recorded = load_gateway_config(name).metadata.get("state_dir")
    except GatewayConfigError:
        recorded = None
    return gateway_paths(name, recorded or None)


def _resolve_name(name: str | None) -> str:
    name = name or active_name() or DEFAULT_NAME
    try:
        return check_name(name)
    except InvalidGatewayName as exc:
        raise CliError(str(exc)) from None


def running_pid(paths: GatewayPaths) -> int | None:
    """Return the pid of the gateway running from ``paths``, or None."""
    from openshell.gateway.server import read_pid

    return read_pid(paths)


def probe_health(host: str, port: int, ca: Path, cert: Path, key: Path, timeout: float = HEALTH_TIMEOUT) -> bool:
    """Return True when ``GET /healthz`` over mTLS answers 200 within ``timeout`` seconds."""
    from openshell.gateway.tls import client_context

    try:
        ctx = client_context(ca, cert, key, alpn=("http/1.1",))
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while len(data) < 4096:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ValueError):
        return False
    return data.startswith(b"HTTP/1.1 200")


def _local_health(paths: GatewayPaths, settings: GatewaySettings) -> bool:
    pki = paths.pki
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else ("::1" if settings.host == "::" else settings.host)
    return probe_health(host, settings.port, pki / "ca.crt", pki / "client.crt", pki / "client.key")


def port_free(host: str, port: int) -> bool:
    """Return False when ``host:port`` cannot be bound (EADDRINUSE)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gateway binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return True


def _write_client_files(paths: GatewayPaths, settings: GatewaySettings, activate: bool = True) -> GatewayConfig:
    pki = paths.pki
    cfg = write_gateway_config(
        settings.name,
        settings.endpoint,
        (pki / "ca.crt").read_bytes(),
        (pki / "client.crt").read_bytes(),
        (pki / "client.key").read_bytes(),
        state_dir=str(paths.root),
        driver=settings.driver,
    )
    if activate:
        set_active(settings.name)
    return cfg


def _failure_reason(paths: GatewayPaths, since: int) -> str:
    """The reason the gateway gave in its log after byte offset ``since``."""
    try:
        with open(paths.log, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    marker = "gateway failed to start: "
    for line in reversed(text.splitlines()):
        if marker in line:
            return line.split(marker, 1)[1].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _free_port(host: str) -> int:
    """A port the kernel picks as free on ``host`` now (racy by nature; the gateway's bind decides)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _usable_port(settings: GatewaySettings, *, explicit: bool) -> GatewaySettings:
    """``settings`` with a port that can be bound now.

    A port the user asked for (``--port``) is used or refused. Otherwise the
    remembered port (else 8080) is used when free, and a free port is picked
    when it is taken, said on stderr; the gateway then remembers that port.

    :raises CliError: an explicit port is already in use.
    """
    if port_free(settings.host, settings.port):
        return settings
    if explicit:
        raise CliError(f"port {settings.port} on {settings.host} is already in use; start the gateway on another port with 'openshell gateway start --port N'")
    chosen = _free_port(settings.host)
    click.echo(f"port {settings.port} on {settings.host} is in use; gateway '{settings.name}' uses port {chosen} instead", err=True)
    return replace(settings, port=chosen)


def _gateway_argv(name: str, settings: GatewaySettings, paths: GatewayPaths, *extra: str) -> list[str]:
    """The command that runs local gateway ``name`` (``python -m openshell.gateway ...``) with
    ``settings``, its state in ``paths.root``, then ``extra`` arguments."""
    return [
        sys.executable,
        "-m",
        "openshell.gateway",
        "--name",
        name,
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--driver",
        settings.driver,
        "--state-dir",
        str(paths.root),
        *extra,
    ]


@dataclass
class StartResult:
    config: GatewayConfig
    pid: int | None
    already_running: bool


def _spinner(message: str) -> Any:
    from rich.console import Console

    return Console(stderr=True).status(message)


def start_gateway(
    name: str = DEFAULT_NAME,
    port: int | None = None,
    driver: str | None = None,
    host: str | None = None,
    timeout: float = START_TIMEOUT,
    activate: bool = True,
) -> StartResult:
    """Start local gateway ``name`` in the background (idempotent) and make it active.

    :param port, driver, host: None reuses what the gateway last ran with (else defaults).
    :param timeout: seconds to wait for ``/healthz``.
    :param activate: make it the active gateway (``openshell gateway start`` does).
    :returns: its client configuration, pid, and whether it was already running.
    :raises CliError: port busy, the gateway exited, or it did not become healthy.
    """
    name = _resolve_name(name)
    paths = local_paths(name)
    saved = read_settings(paths) or GatewaySettings(name=name)
    pid = running_pid(paths)
    if pid is not None:
        # Already up: refresh the client files (e.g. deleted by hand) and report.
        return StartResult(_write_client_files(paths, saved, activate), pid, True)
    settings = GatewaySettings(name, host or saved.host, port or saved.port, driver or saved.driver)
    settings = _usable_port(settings, explicit=port is not None)
    paths.ensure()
    log_offset = paths.log.stat().st_size if paths.log.exists() else 0
    argv = _gateway_argv(name, settings, paths)
    fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    finally:
        os.close(fd)
    deadline = time.monotonic() + timeout
    try:
        with _spinner(f"starting gateway '{name}' on {settings.endpoint}"):
            while True:
                if proc.poll() is not None:
                    reason = _failure_reason(paths, log_offset) or f"exit code {proc.returncode}"
                    raise CliError(f"gateway '{name}' failed to start: {reason} (log: {paths.log})")
                if (paths.pki / "client.key").exists() and _local_health(paths, settings):
                    break
                if time.monotonic() > deadline:
                    _terminate(proc.pid, STOP_TIMEOUT)
                    raise CliError(f"gateway '{name}' did not become healthy within {timeout:.0f}s; see {paths.log}")
                time.sleep(0.1)
    except KeyboardInterrupt:
        # Interrupted before it was ready and before its client files exist: a gateway
        # left running here would be one that `gateway list` does not show. Stop it.
        _terminate(proc.pid, STOP_TIMEOUT)
        proc.poll()
        raise
    # The child is ours only until we exit; mark it reaped-by-nobody so Popen's
    # destructor does not warn about a process that is meant to keep running.
    proc.returncode = 0
    return StartResult(_write_client_files(paths, settings, activate), proc.pid, False)


def stop_gateway(name: str, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop local gateway ``name`` (SIGTERM, then SIGKILL after ``timeout`` seconds).

    :returns: the pid that was stopped, or None when it was not running.
    """
    paths = local_paths(_resolve_name(name))
    pid = running_pid(paths)
    if pid is None:
        return None
    with _spinner(f"stopping gateway '{name}' (pid {pid})"):
        _terminate(pid, timeout, lambda: running_pid(paths) is None)
    return pid


def _terminate(pid: int, timeout: float, gone: Any = None) -> None:
    def is_gone() -> bool:
        if gone is not None and gone():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie child of ours (start_gateway's timeout path) counts as gone
        try:
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            return False

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone():
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        if is_gone():
            return
        time.sleep(0.05)


def gateway_version(name: str, timeout: float = HEALTH_TIMEOUT) -> str | None:
    """Return the OpenShell version gateway ``name`` reports (gRPC ``Health``), or None when it does not answer."""
    from openshell.client.sdk import OpenShellClient, OpenShellError

    try:
        with OpenShellClient.from_config(name, timeout=timeout) as client:
            return client.health() or None
    except (OpenShellError, OSError):
        return None


def gateway_status(name: str) -> dict[str, Any]:
    """Return ``{name, status, endpoint, pid, healthy, state_dir, cli_version, gateway_version}`` for gateway ``name``.

    ``status`` is ``running``/``stopped`` for a local gateway (from its pid file),
    ``remote`` for a configured gateway this machine does not run (``healthy`` then
    says whether it answers ``/healthz`` with the client certificate).
    ``cli_version`` is the OpenShell version installed here (what ``gateway start``
    runs); ``gateway_version`` what the gateway reports (None when not healthy).
    """
    from openshell_cli.version_check import local_version

    try:
        cfg: GatewayConfig | None = load_gateway_config(name)
    except GatewayConfigError:
        cfg = None
    if cfg is not None and not cfg.metadata.get("state_dir") and not os.environ.get("OPENSHELL_STATE_DIR"):
        healthy = probe_health(cfg.host, cfg.port, cfg.ca_path, cfg.cert_path, cfg.key_path)
        return {
            "name": name,
            "status": "remote",
            "endpoint": cfg.endpoint,
            "pid": None,
            "healthy": healthy,
            "state_dir": None,
            "cli_version": local_version(),
            "gateway_version": gateway_version(name) if healthy else None,
        }
    paths = local_paths(name)
    settings = read_settings(paths)
    pid = running_pid(paths)
    endpoint = settings.endpoint if settings else (cfg.endpoint if cfg else None)
    healthy = bool(pid and settings and _local_health(paths, settings))
    return {
        "name": name,
        "status": "running" if pid else "stopped",
        "endpoint": endpoint,
        "pid": pid,
        "healthy": healthy,
        "state_dir": str(paths.root),
        "cli_version": local_version(),
        "gateway_version": gateway_version(name) if healthy and cfg is not None else None,
    }


def ensure_local_gateway(name: str | None = None) -> GatewayConfig:
    """Return the configuration of gateway ``name`` (default: active, else ``openshell``),
    starting it locally first when it is a local gateway that is not running.

    A configured gateway that is not local (its metadata has no ``state_dir``) is
    returned as is: it is somebody else's to run. A gateway started here becomes
    the active one only when no other gateway is active.

    :raises CliError: the local gateway cannot be started (port busy, start failure).
    """
    name = _resolve_name(name)
    try:
        cfg = load_gateway_config(name)
    except GatewayConfigError:
        cfg = None
    if cfg is not None and not cfg.metadata.get("state_dir"):
        return cfg
    if cfg is not None and running_pid(local_paths(name)) is not None:
        return cfg  # fast path: running, files in place; touch nothing
    return start_gateway(name, activate=active_name() in (None, name)).config


# --------------------------------------------------------------------------- commands


def _name_option(help_text: str = "Gateway name (default: the active gateway).") -> Any:
    """``[NAME]`` as an argument or ``--name/-n NAME`` (both kept for scripts); passes ``name`` (str or None).

    Giving both with different values is a usage error.
    """
    option = click.option("--name", "-n", "name_option", default=None, metavar="NAME", help=f"{help_text} Same as the NAME argument.")
    argument = click.argument("name_argument", metavar="[NAME]", required=False, default=None)

    def merge(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, name_option: str | None, name_argument: str | None, **kwargs: Any) -> Any:
            if name_option is not None and name_argument is not None and name_option != name_argument:
                raise click.UsageError(f"gateway named twice: '{name_argument}' and --name '{name_option}'; give one")
            return fn(*args, name=name_argument if name_argument is not None else name_option, **kwargs)

        return argument(option(wrapper))

    return merge


@click.group("gateway")
def gateway() -> None:
    """Run and select OpenShell gateways (the control plane).

    \b
    Examples:
      openshell gateway start                 # local gateway on 127.0.0.1:8080
      openshell gateway status -o json
      openshell gateway stop
    """


@gateway.command("start")
@_name_option(f"Gateway name (default: {DEFAULT_NAME}).")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=None, help=f"TCP port for gRPC and HTTP  [default: last used, else {DEFAULT_PORT}]")
@click.option("--driver", default=None, help=f"Compute driver  [default: last used, else {DEFAULT_DRIVER}]")
@click.option("--foreground", is_flag=True, help="Run in this terminal until Ctrl-C (logs on stderr).")
def start_cmd(name: str | None, port: int | None, driver: str | None, foreground: bool) -> None:
    """Start local gateway NAME (default: openshell) and make it the active one.

    Runs in the background by default and returns once it answers /healthz over
    mTLS. Starting a running gateway just reports it.

    \b
    Examples:
      openshell gateway start
      openshell gateway start dev --port 9090
      openshell gateway start --foreground
    """
    name = name or DEFAULT_NAME
    if foreground:
        _start_foreground(_resolve_name(name), port, driver)
        return
    result = start_gateway(name, port, driver)
    if result.already_running:
        click.echo(f"gateway '{result.config.name}' is already running at {result.config.endpoint} (pid {result.pid})")
        # the moment a user expects an upgrade to take effect: say when it did not
        from openshell_cli.version_check import report, silenced

        running = None if silenced() else gateway_version(result.config.name)
        if running:
            report(running, result.config.name, result.config.endpoint)
    else:
        click.echo(f"gateway '{result.config.name}' started at {result.config.endpoint} (pid {result.pid}); it is now the active gateway")


def _start_foreground(name: str, port: int | None, driver: str | None) -> None:
    from openshell.gateway.tls import ensure_pki

    paths = local_paths(name)
    if running_pid(paths) is not None:
        raise CliError(f"gateway '{name}' is already running; stop it first with 'openshell gateway stop --name {name}'")
    saved = read_settings(paths) or GatewaySettings(name=name)
    settings = GatewaySettings(name, saved.host, port or saved.port, driver or saved.driver)
    settings = _usable_port(settings, explicit=port is not None)
    # Make the PKI now so the client files exist while the gateway runs (the
    # gateway reuses it); then replace this process with the gateway.
    ensure_pki(paths.ensure().pki, [settings.host])
    _write_client_files(paths, settings)
    argv = _gateway_argv(name, settings, paths, "--log-stderr")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@gateway.command("stop")
@_name_option()
def stop_cmd(name: str | None) -> None:
    """Stop local gateway NAME (default: the active one). Sandboxes keep running and reconnect when it starts again.

    \b
    Example:
      openshell gateway stop dev
    """
    name = _resolve_name(name)
    pid = stop_gateway(name)
    click.echo(f"gateway '{name}' is not running" if pid is None else f"gateway '{name}' stopped (pid {pid})")


@gateway.command("status")
@_name_option()
@OUTPUT_OPTION
def status_cmd(name: str | None, output: str) -> None:
    """Show whether gateway NAME (default: the active one) runs and answers /healthz, and its version.

    VERSION is the OpenShell version the gateway reports, followed by
    "(cli X)" when the version installed here (what 'gateway start' runs)
    differs; -o json has both as gateway_version and cli_version. When they
    differ, every command that talks to the gateway warns once on stderr;
    OPENSHELL_NO_VERSION_CHECK=1 silences it.

    \b
    Example:
      openshell gateway status -o json
    """
    from openshell_cli.version_check import report

    status = gateway_status(_resolve_name(name))
    if output == "table":  # one VERSION column keeps the endpoint readable in 80 columns
        gw, mine = status["gateway_version"], status["cli_version"]
        row = dict(status, version=f"{gw} (cli {mine})" if gw and gw != mine else (gw or f"- (cli {mine})"))
        render(row, output, columns=("name", "status", "endpoint", "pid", "healthy", "version"))
    else:
        render(status, output)
    if status["gateway_version"]:
        report(status["gateway_version"], status["name"], status["endpoint"] or "")


@gateway.command("info")
@_name_option()
@OUTPUT_OPTION
def info_cmd(name: str | None, output: str) -> None:
    """Show gateway NAME's (default: the active one) endpoint, state directory, driver and certificate paths.

    \b
    Example:
      openshell gateway info dev -o yaml
    """
    name = _resolve_name(name)
    paths = local_paths(name)
    settings = read_settings(paths)
    try:
        cfg: GatewayConfig | None = load_gateway_config(name)
    except GatewayConfigError:
        cfg = None
    if settings is None and cfg is None:
        raise CliError(f"gateway '{name}' is not configured; see 'openshell gateway list' or run 'openshell gateway start --name {name}'")
    info = {
        "name": name,
        "active": active_name() == name,
        "endpoint": cfg.endpoint if cfg else cast(GatewaySettings, settings).endpoint,  # not both None: refused above
        "driver": settings.driver if settings else (cfg.metadata.get("driver") if cfg else None),
        "state_dir": str(paths.root) if settings else None,
        "log": str(paths.log) if settings else None,
        "ca_cert": str(cfg.ca_path) if cfg else None,
        "client_cert": str(cfg.cert_path) if cfg else None,
        "client_key": str(cfg.key_path) if cfg else None,
        "supervisor_cert": str(paths.pki / "supervisor.crt") if settings else None,
    }
    if output == "table":  # key: value lines fit 80 columns where a wide table would not
        width = max(len(k) for k in info)
        for key, value in info.items():
            click.echo(f"{key:<{width}}  {'' if value is None else value}")
        return
    render(info, output)


@gateway.command("list")
@OUTPUT_OPTION
def list_cmd(output: str) -> None:
    """List configured gateways; the active one is marked with '*'.

    \b
    Example:
      openshell gateway list -o json
    """
    active = active_name()
    rows: list[dict[str, Any]] = []
    for name in list_gateways():
        try:
            cfg = load_gateway_config(name)
            endpoint, local = cfg.endpoint, bool(cfg.metadata.get("state_dir"))
        except GatewayConfigError:
            endpoint, local = None, False
        status = ("running" if running_pid(local_paths(name)) else "stopped") if local else "remote"
        rows.append({"active": "*" if name == active else "", "name": name, "endpoint": endpoint, "status": status})
    if output != "table":
        for row in rows:
            row["active"] = bool(row["active"])
    render(rows, output, columns=("active", "name", "endpoint", "status"), empty="no gateways configured; run 'openshell gateway start'")


@gateway.command("select")
@click.argument("name")
def select_cmd(name: str) -> None:
    """Make NAME the active gateway (used by the CLI and the SDK).

    \b
    Example:
      openshell gateway select dev
    """
    name = _resolve_name(name)
    try:
        set_active(name)
    except GatewayConfigError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"active gateway: {name}")


@gateway.command("destroy")
@_name_option()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def destroy_cmd(name: str | None, yes: bool) -> None:
    """Stop local gateway NAME (default: the active one), delete its sandboxes, state and client files.

    \b
    Example:
      openshell gateway destroy dev --yes
    """
    name = _resolve_name(name)
    paths = local_paths(name)
    configured = name in list_gateways()
    if not paths.root.exists() and not configured:
        raise CliError(f"gateway '{name}' does not exist; see 'openshell gateway list'")
    if not yes:
        if sys.stdin is None or not sys.stdin.isatty():
            raise CliError(f"gateway destroy removes '{name}', its sandboxes and {paths.root}: pass --yes to confirm (stdin is not a terminal to ask on)")
        click.confirm(f"Destroy gateway '{name}', its sandboxes and {paths.root}?", abort=True, err=True)
    stop_gateway(name)
    for warning in _delete_sandboxes(paths):
        click.echo(f"warning: {warning}", err=True)
    was_active = active_name() == name
    shutil.rmtree(paths.root, ignore_errors=True)
    remove_gateway_config(name)
    click.echo(f"gateway '{name}' destroyed")
    others = list_gateways()
    if was_active and others and active_name() is None:
        click.echo(f"no gateway is active now; run 'openshell gateway select NAME' with one of: {', '.join(others)}", err=True)


def _delete_sandboxes(paths: GatewayPaths) -> Iterator[str]:
    """Ask the gateway's compute driver to delete every sandbox it left on disk; yield warnings."""
    ids = sorted(p.name for p in paths.sandboxes.iterdir() if p.is_dir()) if paths.sandboxes.is_dir() else []
    if not ids:
        return
    settings = read_settings(paths) or GatewaySettings()
    try:
        from openshell.plugin.kinds import DriverContext
        from openshell.plugin.loader import get_registry

        cls = get_registry().require("drivers", settings.driver)
        driver = cls(
            DriverContext(
                state_dir=str(paths.root),
                gateway_endpoint=settings.endpoint,
                ca_cert=str(paths.pki / "ca.crt"),
                client_cert=str(paths.pki / "supervisor.crt"),
                client_key=str(paths.pki / "supervisor.key"),
            )
        )
    except Exception as exc:  # noqa: BLE001 - destroy still removes the state
        yield f"cannot load compute driver {settings.driver!r} ({exc}); {len(ids)} sandbox(es) not stopped"
        return
    for sandbox_id in ids:
        try:
            driver.delete(sandbox_id)
        except Exception as exc:  # noqa: BLE001
            yield f"sandbox {sandbox_id}: {exc}"


COMMANDS = [gateway]
