"""Run a command in a sandbox over its supervisor's SSH server (gateway side).

The gateway dials the SSH endpoint the compute driver names, sends the NSSH1
preface signed with the sandbox's secret, then speaks SSH (paramiko, blocking,
in a worker thread) and turns the channel into an async stream of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import AsyncGenerator, AsyncIterator, Optional, Union

import paramiko

from openshell.nssh import OK, client_transport, make_preface
from openshell.plugin.kinds import SshEndpoint
from openshell.supervisor.ssh_server import command_for

CONNECT_TIMEOUT = 10.0  # seconds for dial + preface + SSH handshake
CHUNK = 64 * 1024
TIMEOUT_EXIT_CODE = 124  # what `timeout(1)` returns; the CLI contract uses it too


class SandboxUnreachable(ConnectionError):
    """The sandbox's SSH endpoint refused us (down, or the preface was rejected)."""


@dataclass(frozen=True)
class ExecEvent:
    """One event of an exec stream.

    :ivar kind: ``stdout``, ``stderr`` or ``exit`` (exactly one ``exit``, last).
    :ivar data: output bytes for stdout/stderr.
    :ivar exit_code: the command's exit code for ``exit`` (124 on timeout).
    """

    kind: str
    data: bytes = b""
    exit_code: Optional[int] = None


def open_ssh_socket(endpoint: SshEndpoint, secret: bytes, token: str = "gateway", timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """Dial ``endpoint`` and complete the NSSH1 preface.

    :returns: a connected socket positioned at the start of the SSH stream.
    :raises SandboxUnreachable: dial failed or the supervisor answered ``ERR``.
    """
    try:
        if endpoint.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(endpoint.unix_path)
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        sock.sendall(make_preface(secret, token))
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < 8:
            b = sock.recv(1)
            if not b:
                break
            answer += b
    except OSError as exc:
        raise SandboxUnreachable(f"sandbox SSH endpoint unreachable: {exc}") from exc
    if answer != OK:
        sock.close()
        raise SandboxUnreachable("sandbox SSH endpoint rejected the gateway's preface")
    sock.settimeout(None)
    return sock


def open_transport(endpoint: SshEndpoint, secret: bytes, timeout: float = CONNECT_TIMEOUT) -> paramiko.Transport:
    """Return an authenticated paramiko client transport to the sandbox."""
    sock = open_ssh_socket(endpoint, secret, timeout=timeout)
    transport = client_transport(sock)
    try:
        transport.start_client(timeout=timeout)
        transport.auth_none("sandbox")
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise SandboxUnreachable(f"SSH handshake with the sandbox failed: {exc}") from exc
    return transport


#: bytes, an async iterator of chunks (a ``(cols, rows)`` tuple item resizes the PTY), or None
StdinSource = Union[bytes, AsyncIterator[Union[bytes, tuple[int, int]]], None]


async def exec_in_sandbox(
    endpoint: SshEndpoint,
    secret: bytes,
    argv: list[str],
    *,
    env: Optional[dict[str, str]] = None,
    workdir: Optional[str] = None,
    stdin: StdinSource = None,
    timeout: Optional[float] = None,
    tty: bool = False,
    cols: int = 80,
    rows: int = 24,
) -> AsyncGenerator[ExecEvent, None]:
    """Run ``argv`` in the sandbox and yield its output as events.

    :param env: extra environment variables for the command.
    :param workdir: directory to run in (default: the sandbox workdir).
    :param stdin: bytes, an async iterator of chunks, or None (stdin closed at once).
        With ``tty``, a ``(cols, rows)`` item of the iterator resizes the PTY.
    :param tty: run under a PTY of ``cols`` x ``rows`` characters (stdout and
        stderr merged, as on a terminal).
    :param timeout: seconds; when exceeded the command is killed and the exit
        event carries 124.
    :raises SandboxUnreachable: before the first event, when the sandbox cannot be reached.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[ExecEvent] = asyncio.Queue(maxsize=256)
    transport = await loop.run_in_executor(None, open_transport, endpoint, secret)
    chan = transport.open_session(timeout=CONNECT_TIMEOUT)
    if env:
        chan.update_environment(env)
    if tty:
        chan.get_pty(width=max(int(cols), 1), height=max(int(rows), 1))
    chan.exec_command(command_for(argv, workdir))
    deadline = None if timeout is None else time.monotonic() + timeout
    stop = threading.Event()

    def put(ev: ExecEvent) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(ev), loop)
        with contextlib.suppress(Exception):
            fut.result()

    def reader() -> None:
        code: Optional[int] = None
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    code = TIMEOUT_EXIT_CODE
                    break
                if stop.is_set():
                    break
                got = False
                while chan.recv_ready():
                    put(ExecEvent("stdout", chan.recv(CHUNK)))
                    got = True
                while chan.recv_stderr_ready():
                    put(ExecEvent("stderr", chan.recv_stderr(CHUNK)))
                    got = True
                # SSH orders data before exit-status, so once the status is in,
                # every byte of output is already buffered.
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    code = chan.recv_exit_status()
                    break
                if chan.closed and not got:
                    break
                if not got:
                    select.select([chan], [], [], 0.1)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(Exception):
                chan.close()
            with contextlib.suppress(Exception):
                transport.close()
            put(ExecEvent("exit", exit_code=255 if code is None or code < 0 else code))

    async def writer() -> None:
        try:
            if isinstance(stdin, (bytes, bytearray)):
                await loop.run_in_executor(None, chan.sendall, bytes(stdin))
            elif stdin is not None:
                async for chunk in stdin:
                    if isinstance(chunk, tuple):
                        if tty:
                            await loop.run_in_executor(None, chan.resize_pty, max(int(chunk[0]), 1), max(int(chunk[1]), 1))
                    elif chunk:
                        await loop.run_in_executor(None, chan.sendall, chunk)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(Exception):
                chan.shutdown_write()

    thread = threading.Thread(target=reader, daemon=True, name="exec-reader")
    thread.start()
    wtask = asyncio.ensure_future(writer())
    try:
        while True:
            ev = await queue.get()
            yield ev
            if ev.kind == "exit":
                return
    finally:
        stop.set()
        wtask.cancel()
