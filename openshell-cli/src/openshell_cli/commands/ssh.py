"""``openshell ssh-proxy``: the gateway's SSH tunnel on stdin/stdout, for OpenSSH's ``ProxyCommand``.

Also the helpers other commands use to reach a sandbox over SSH
(:func:`ssh_transport`) and to describe it to OpenSSH (:func:`ssh_config_block`).
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import sys
from typing import Optional

import click

from openshell_cli import session
from openshell_cli.errors import CliError
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION, current_workspace

CHUNK = 64 * 1024


def open_tunnel_socket(client, name: str):
    """Return a socket carrying SSH to sandbox ``name`` (token + ``CONNECT /connect/ssh``).

    :raises CliError: the sandbox is unknown or the gateway refused the tunnel.
    """
    from openshell.client.sdk import OpenShellError
    from openshell.client.ssh_tunnel import TunnelError, open_client_tunnel

    try:
        return open_client_tunnel(client, name)
    except (TunnelError, OpenShellError) as exc:
        raise CliError(str(exc)) from exc


def ssh_transport(client, name: str):
    """Return an authenticated ``paramiko.Transport`` to sandbox ``name``.

    :raises CliError: as :func:`open_tunnel_socket`, or the SSH handshake failed.
    """
    from openshell.client.sdk import OpenShellError
    from openshell.client.ssh_tunnel import TunnelError, open_ssh_transport

    try:
        return open_ssh_transport(client, name)
    except (TunnelError, OpenShellError) as exc:
        raise CliError(str(exc)) from exc


def openshell_executable() -> str:
    """Absolute path of the ``openshell`` program running now (for ProxyCommand lines)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 and os.path.basename(argv0) == "openshell" and os.path.exists(argv0):
        return os.path.abspath(argv0)
    return shutil.which("openshell") or os.path.join(os.path.dirname(sys.executable), "openshell")


def ssh_config_block(name: str, gateway: Optional[str]) -> str:
    """The ``Host openshell-NAME`` block for ``~/.ssh/config``.

    The sandbox's host key is generated each time its supervisor starts; the
    gateway's mTLS and the session token authenticate the far end, so the key
    is not pinned (StrictHostKeyChecking no, no known_hosts entry).
    """
    proxy = [openshell_executable(), "ssh-proxy", "--name", name]
    if gateway:
        proxy += ["--gateway", gateway]
    workspace = current_workspace()
    if workspace:
        proxy += ["--workspace", workspace]
    return "\n".join(
        [
            f"Host openshell-{name}",
            "    User sandbox",
            f"    ProxyCommand {shlex.join(proxy)}",
            "    StrictHostKeyChecking no",
            "    UserKnownHostsFile /dev/null",
            "    GlobalKnownHostsFile /dev/null",
            "    LogLevel ERROR",
            "    ServerAliveInterval 30",
            "",
        ]
    )


def bridge_stdio(sock) -> None:
    """Copy stdin → ``sock`` and ``sock`` → stdout until the socket closes."""
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    stdin_open = True
    try:
        while True:
            r, _, _ = select.select([sock] + ([in_fd] if stdin_open else []), [], [])
            if in_fd in r:
                data = os.read(in_fd, CHUNK)
                if data:
                    sock.sendall(data)
                else:
                    stdin_open = False
                    sock.shutdown(1)  # SHUT_WR: the SSH server sees EOF
            if sock in r:
                data = sock.recv(CHUNK)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    n = os.write(out_fd, view)
                    view = view[n:]
    except (BrokenPipeError, ConnectionError):
        return
    finally:
        sock.close()


@click.command("ssh-proxy")
@click.option("--name", required=True, help="Sandbox name.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def ssh_proxy(name: str, gateway: Optional[str]) -> None:
    """Carry SSH to sandbox NAME over stdin/stdout (for OpenSSH's ProxyCommand).

    It asks the gateway for a session token, opens CONNECT /connect/ssh over
    mTLS and relays bytes. 'openshell sandbox ssh-config NAME' writes the
    matching ssh_config block.

    \b
    Example:
      ssh -o ProxyCommand='openshell ssh-proxy --name demo' sandbox@demo
      openshell sandbox ssh-config demo >> ~/.ssh/config && ssh openshell-demo
    """
    client = session.client(gateway)
    bridge_stdio(open_tunnel_socket(client, name))


COMMANDS = [ssh_proxy]
