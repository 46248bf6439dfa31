"""Client side of ``CONNECT /connect/ssh``: a TLS socket that carries SSH to a sandbox (issue 4).

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

import json
import socket
import ssl
from typing import Any

CONNECT_TIMEOUT = 15.0  # seconds for TCP + TLS + CONNECT answer
MAX_HEAD = 16 * 1024  # bytes of the gateway's answer head we accept


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


def open_tunnel(endpoint: str, ssl_context: ssl.SSLContext, sandbox_id: str, token: str,
                *, timeout: float = CONNECT_TIMEOUT) -> ssl.SSLSocket:
    """Dial the gateway and open ``CONNECT /connect/ssh`` for one sandbox.

    :param endpoint: ``https://host:port`` of the gateway.
    :param ssl_context: a client context with our certificate and ALPN ``http/1.1``.
    :param sandbox_id, token: from ``CreateSshSession``.
    :returns: the TLS socket, positioned at the first SSH byte (blocking, no timeout).
    :raises TunnelError: no connection, or any answer but 200 (``status`` says which).
    """
    from urllib.parse import urlsplit

    split = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host, port = split.hostname or "127.0.0.1", split.port or 443
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TunnelError(0, f"gateway at {endpoint} is not reachable ({exc}); check 'openshell gateway status'") from exc
    try:
        tls = ssl_context.wrap_socket(raw, server_hostname=host)
        head = (
            "CONNECT /connect/ssh HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            f"x-sandbox-id: {sandbox_id}\r\n"
            f"x-sandbox-token: {token}\r\n\r\n"
        )
        tls.sendall(head.encode("latin-1"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            if len(answer) > MAX_HEAD:
                raise TunnelError(0, "gateway answer head too large")
            # One byte at a time: everything after the head is SSH and must stay unread.
            b = tls.recv(1)
            if not b:
                raise TunnelError(0, f"gateway at {endpoint} closed the tunnel without an answer")
            answer += b
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        if status != 200:
            detail = _error_body(tls, answer)
            hint = _HINTS.get(status, "check 'openshell gateway status'")
            raise TunnelError(status, f"gateway refused the SSH tunnel ({status}: {detail}); {hint}")
        tls.settimeout(None)
        return tls
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        if isinstance(exc, TunnelError):
            raise
        raise TunnelError(0, f"TLS to gateway {endpoint} failed ({exc}); check 'openshell gateway info'") from exc
    except BaseException:
        raw.close()
        raise


def _error_body(tls: ssl.SSLSocket, head: bytes) -> str:
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = min(int(value.strip()), 4096)
    body = b""
    try:
        while len(body) < length:
            chunk = tls.recv(length - len(body))
            if not chunk:
                break
            body += chunk
        return str(json.loads(body).get("error", "")) or "no detail"
    except (OSError, ValueError, AttributeError):
        return body.decode(errors="replace")[:200] or "no detail"


def open_client_tunnel(client: Any, name: str) -> ssl.SSLSocket:
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
    import paramiko

    sock = open_client_tunnel(client, name)
    transport = paramiko.Transport(sock)
    transport.set_keepalive(30)
    try:
        transport.start_client(timeout=timeout)
        transport.auth_none("sandbox")
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise TunnelError(0, f"SSH handshake with sandbox '{name}' failed ({exc}); see 'openshell sandbox get {name}'") from exc
    return transport
