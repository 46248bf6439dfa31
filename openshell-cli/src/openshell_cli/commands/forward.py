"""``openshell forward start|list|stop``: local ports forwarded to ports inside sandboxes.

Each forward is a background process (:mod:`openshell_cli.forwarder`) whose
state file ``$XDG_STATE_HOME/openshell/forwards/<sandbox>-<port>.json`` lets
``list`` and ``stop`` find it from any later CLI invocation. Targets are always
127.0.0.1:PORT inside the sandbox's network namespace (the supervisor refuses
anything else).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import click

from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import GATEWAY_OPTION

START_TIMEOUT = 30.0  # seconds for the forwarder to reach the sandbox and listen
STOP_TIMEOUT = 5.0


def forwards_dir() -> Path:
    """``$XDG_STATE_HOME/openshell/forwards`` (created 0700)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    path = Path(base) / "openshell" / "forwards"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _state_file(name: str, port: int) -> Path:
    return forwards_dir() / f"{name}-{port}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _is_forwarder(pid: int) -> bool:
    try:
        return b"openshell_cli.forwarder" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def live_forwards() -> list[dict]:
    """Every forward whose process is alive (stale state files are removed)."""
    out = []
    for path in sorted(forwards_dir().glob("*.json")):
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid) and _is_forwarder(pid):
            out.append(info)
        else:
            path.unlink(missing_ok=True)
    return out


def parse_bind_port(spec: str) -> tuple[str, int]:
    """``[BIND:]PORT`` → ``(bind, port)``; BIND defaults to 127.0.0.1.

    :raises click.BadParameter: not a port in 1..65535, an empty BIND, or a BIND
        that is a port number (``LOCAL:REMOTE`` as in ``ssh -L``: the forwarded
        port is the same on both sides).
    """
    bind, sep, port_s = spec.rpartition(":")
    if ":" in bind and not bind.startswith("["):
        # "::1" would read as bind ":" port 1: an IPv6 bind needs brackets.
        raise click.BadParameter(f"{spec!r}: write an IPv6 BIND in brackets, e.g. [::1]:PORT", param_hint="[BIND:]PORT")
    bind = bind.strip("[]") if sep else "127.0.0.1"
    if sep and bind.isdigit():
        raise click.BadParameter(
            f"{spec!r}: the port is the same here and in the sandbox, so LOCAL:REMOTE is not supported; give [BIND:]PORT, e.g. {port_s} or 127.0.0.1:{port_s}",
            param_hint="[BIND:]PORT",
        )
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535 or (sep and not bind):
        raise click.BadParameter(f"{spec!r} is not [BIND:]PORT with PORT in 1-65535", param_hint="[BIND:]PORT")
    return bind, int(port_s)


@click.group()
def forward() -> None:
    """Forward local ports to ports inside sandboxes (over SSH through the gateway).

    \b
    Examples:
      openshell forward start 8000 demo          # localhost:8000 -> demo's 127.0.0.1:8000
      openshell forward start 0.0.0.0:8000 demo
      openshell forward list
      openshell forward stop 8000 demo
    """


@forward.command("start")
@click.argument("bind_port", metavar="[BIND:]PORT")
@click.argument("name")
@GATEWAY_OPTION
def start(bind_port: str, name: str, gateway: Optional[str]) -> None:
    """Listen on [BIND:]PORT here and forward each connection to 127.0.0.1:PORT in sandbox NAME.

    Runs in the background until 'openshell forward stop PORT NAME'; reports
    success only once the local listener accepts connections.

    \b
    Example:
      openshell forward start 8000 demo && curl http://127.0.0.1:8000/
    """
    bind, port = parse_bind_port(bind_port)
    state = _state_file(name, port)
    if any(f["name"] == name and int(f["port"]) == port for f in live_forwards()):
        raise CliError(f"port {port} of sandbox '{name}' is already forwarded; see 'openshell forward list'")
    if not _is_loopback(bind):
        # Not refused (sharing a dev server on the LAN is a use), but never silent.
        click.echo(
            f"warning: {bind}:{port} is not a loopback address: other machines that reach this one can connect to sandbox '{name}' port {port}", err=True
        )
    log_path = state.with_suffix(".log")
    cmd = [sys.executable, "-m", "openshell_cli.forwarder", "--name", name, "--port", str(port), "--bind", bind, "--state", str(state)]
    if gateway:
        cmd += ["--gateway", gateway]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True)
    finally:
        os.close(fd)
    from rich.console import Console

    deadline = time.monotonic() + START_TIMEOUT
    with Console(stderr=True).status(f"forwarding {bind}:{port} to sandbox {name}…"):
        while True:
            if proc.poll() is not None:
                lines = log_path.read_text(errors="replace").strip().splitlines()
                reason = next((ln[len("error: ") :] for ln in reversed(lines) if ln.startswith("error: ")), lines[-1] if lines else "no reason logged")
                raise CliError(f"forward of port {port} to sandbox '{name}' failed: {reason}")
            if state.exists() and _accepts(bind, port):
                break
            if time.monotonic() > deadline:
                _terminate(proc.pid)
                raise CliError(f"forward of port {port} to sandbox '{name}' did not start within {START_TIMEOUT:g}s; see {log_path}")
            time.sleep(0.1)
    click.echo(f"forwarding {bind}:{port} -> sandbox {name} 127.0.0.1:{port} (pid {proc.pid}); stop with 'openshell forward stop {port} {name}'")


def _is_loopback(bind: str) -> bool:
    """Whether a listener on ``bind`` is reachable only from this machine (``localhost``
    and 127.0.0.0/8, ::1; a name other than localhost counts as not loopback)."""
    import ipaddress

    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def _accepts(bind: str, port: int) -> bool:
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@forward.command("list")
@OUTPUT_OPTION
def list_(output: str) -> None:
    """List running forwards.

    \b
    Example:
      openshell forward list -o json
    """
    rows = [{"sandbox": f["name"], "port": int(f["port"]), "bind": f["bind"], "pid": int(f["pid"]), "gateway": f.get("gateway", "")} for f in live_forwards()]
    render(rows, output, columns=("sandbox", "port", "bind", "pid"), empty="no forwards; start one with 'openshell forward start PORT NAME'")


@forward.command("stop")
@click.argument("bind_port", metavar="[BIND:]PORT")
@click.argument("name")
def stop(bind_port: str, name: str) -> None:
    """Stop forwarding PORT to sandbox NAME ([BIND:]PORT as given to start; a
    sandbox's port has one forward, so PORT alone is enough).

    \b
    Examples:
      openshell forward stop 8000 demo
      openshell forward stop 0.0.0.0:8000 demo
    """
    bind, port = parse_bind_port(bind_port)
    match = [f for f in live_forwards() if f["name"] == name and int(f["port"]) == port]
    if not match:
        raise CliError(f"no forward of port {port} to sandbox '{name}'; see 'openshell forward list'")
    if ":" in bind_port and match[0]["bind"] != bind:
        raise CliError(f"port {port} of sandbox '{name}' is forwarded on {match[0]['bind']}, not {bind}; stop it with 'openshell forward stop {port} {name}'")
    _terminate(int(match[0]["pid"]))
    _state_file(name, port).unlink(missing_ok=True)
    click.echo(f"stopped forwarding port {port} to sandbox {name}")


COMMANDS = [forward]
