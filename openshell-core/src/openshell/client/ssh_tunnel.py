"""Client side of ``CONNECT /connect/ssh``: a TLS socket that carries SSH to a sandbox.

    from openshell.client.sdk import OpenShellClient
    from openshell.client.ssh_tunnel import open_ssh_transport

    with OpenShellClient.from_config() as client:
        transport = open_ssh_transport(client, "demo")     # paramiko.Transport, authenticated
        chan = transport.open_session(); chan.exec_command("id")

The tunnel is mTLS to the gateway (ALPN ``http/1.1``), then ``CONNECT
/connect/ssh`` with the sandbox id and a fresh ``CreateSshSession`` token. SSH
inside it authenticates with ``none``: the gateway already checked our client
certificate and token, and it alone can sign the NSSH1 preface the supervisor
requires. The supervisor's host key is generated per start, so it is not
pinned; the TLS channel to our own CA-verified gateway is what authenticates
the far end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 15.0  # seconds for TCP + TLS + CONNECT answer
MAX_HEAD = 16 * 1024  # bytes of the gateway's answer head we accept
CHUNK = 64 * 1024  # bytes per relay read


class TunnelError(ConnectionError):
    """The gateway refused the tunnel; ``status`` is its HTTP status (0: no answer).

    The message is one line naming the problem and the fix.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_HINTS = {
    401: "the SSH session token was refused (expired or revoked); retry to get a new one",
    404: "the sandbox does not exist; see 'openshell sandbox list'",
    412: "the sandbox is not READY; see 'openshell sandbox get NAME'",
    429: "too many open SSH tunnels; close some sessions or forwards",
    502: "the gateway cannot reach the sandbox's supervisor; see 'openshell sandbox get NAME'",
}


def open_tunnel(endpoint: str, ssl_context: ssl.SSLContext, sandbox_id: str, token: str, *, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """Dial the gateway and open ``CONNECT /connect/ssh`` for one sandbox.

    The TLS connection is driven by a private asyncio loop in a daemon thread
    (OpenSSL objects must not be read and written from two threads at once, and
    paramiko does exactly that); the caller gets the plain end of a socket
    pair whose bytes the loop relays to and from the TLS connection.

    :param endpoint: ``https://host:port`` of the gateway.
    :param ssl_context: a client context with our certificate and ALPN ``http/1.1``.
    :param sandbox_id, token: from ``CreateSshSession``.
    :returns: a connected blocking socket, positioned at the first SSH byte.
    :raises TunnelError: no connection, or any answer but 200 (``status`` says which).
    """
    split = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host, port = split.hostname or "127.0.0.1", split.port or 443
    ours, theirs = socket.socketpair()
    ready: concurrent.futures.Future = concurrent.futures.Future()

    async def run() -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ssl_context, server_hostname=host, limit=MAX_HEAD), timeout)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise TunnelError(0, f"gateway at {endpoint} is not reachable over mTLS ({exc}); check 'openshell gateway status'") from exc
        try:
            writer.write(
                (f"CONNECT /connect/ssh HTTP/1.1\r\nHost: {host}:{port}\r\nx-sandbox-id: {sandbox_id}\r\nx-sandbox-token: {token}\r\n\r\n").encode("latin-1")
            )
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError) as exc:
                raise TunnelError(0, f"gateway at {endpoint} gave no tunnel answer ({type(exc).__name__})") from exc
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
            if status != 200:
                detail = await _error_body(reader, head)
                raise TunnelError(status, f"gateway refused the SSH tunnel ({status}: {detail}); {_HINTS.get(status, 'check openshell gateway status')}")
            local_r, local_w = await asyncio.open_connection(sock=theirs, limit=CHUNK)
            ready.set_result(None)
            await _relay(reader, writer, local_r, local_w)
        finally:
            writer.close()

    def thread() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if not ready.done():
                ready.set_exception(exc)
        finally:
            theirs.close()

    threading.Thread(target=thread, daemon=True, name="ssh-tunnel").start()
    try:
        ready.result(timeout=timeout + 5)
    except concurrent.futures.TimeoutError:
        ours.close()
        raise TunnelError(0, f"gateway at {endpoint} did not answer within {timeout:g}s") from None
    except BaseException:
        ours.close()
        raise
    return ours


async def _relay(r1, w1, r2, w2) -> None:
    async def pump(src, dst) -> None:
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            try:
                if dst.can_write_eof():
                    dst.write_eof()
                else:
                    dst.close()
            except (OSError, RuntimeError):
                pass

    await asyncio.gather(pump(r1, w2), pump(r2, w1))
    w2.close()


async def _error_body(reader: asyncio.StreamReader, head: bytes) -> str:
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = min(int(value.strip()), 4096)
    try:
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        return str(json.loads(body).get("error", "")) or "no detail"
    except (OSError, ValueError, AttributeError, asyncio.IncompleteReadError, TimeoutError):
        return "no detail"


def open_client_tunnel(client: Any, name: str) -> socket.socket:
    """Create an SSH session for sandbox ``name`` with ``client`` (an ``OpenShellClient``) and open its tunnel.

    :raises TunnelError: the gateway refused the tunnel.
    :raises openshell.client.sdk.OpenShellError: the session could not be created (unknown sandbox, …).
    """
    session = client.create_ssh_session(name)
    return open_tunnel(client.endpoint, client.tunnel_ssl_context(), session.sandbox_id, session.token)


def open_ssh_transport(client: Any, name: str, *, timeout: float = CONNECT_TIMEOUT):
    """Return an authenticated ``paramiko.Transport`` to sandbox ``name`` through the gateway.

    :raises TunnelError: the tunnel or the SSH handshake failed.
    """
    import paramiko  # deferred: ~60 ms that only SSH commands of the CLI should pay

    from openshell.nssh import client_transport

    sock = open_client_tunnel(client, name)
    transport = client_transport(sock)
    transport.set_keepalive(30)
    try:
        transport.start_client(timeout=timeout)
        transport.auth_none("sandbox")
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise TunnelError(0, f"SSH handshake with sandbox '{name}' failed ({exc}); see 'openshell sandbox get {name}'") from exc
    return transport
