"""``CONNECT /connect/ssh`` and the SSH server behind it, against a real gateway and real sandboxes.

A gateway runs in-process (its own loop in a thread) on a free loopback port
with the ``local`` driver; sandboxes are real (root, netns, Landlock, seccomp).
Everything is torn down even when a test fails.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import threading
import time

import paramiko
import pytest
from openshell.client.sdk import OpenShellClient, OpenShellError
from openshell.client.ssh_tunnel import TunnelError, open_ssh_transport, open_tunnel
from openshell.gateway.server import Gateway
from openshell.gateway.ssh_sessions import MAX_TUNNELS_PER_SANDBOX, MAX_TUNNELS_PER_TOKEN
from openshell.plugin.loader import get_registry

READY = "ia-ready"
BROKEN = "ia-broken"


def _needs_sandboxes() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (sandboxes use namespaces, Landlock, seccomp)")

    names = set(get_registry().classes("isolation"))
    if not {"netns", "landlock", "seccomp"} <= names:
        pytest.skip("isolation plugins are not installed in this environment")


class _Env:
    def __init__(self, tmp) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gateway = Gateway(name="iassh", host="127.0.0.1", port=0, driver="local", state_dir=tmp / "state")
        self.client: OpenShellClient | None = None

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def core(self):
        return self.gateway.core

    def close(self) -> None:
        try:
            if self.client is not None:
                for sb in self.client.list_sandboxes():
                    try:
                        self.client.delete_sandbox(sb.name, allow_missing=True)
                    except OpenShellError:
                        pass
                self.client.close()
            if self.gateway.front is not None:
                self.run(self.gateway.stop(grace=0.5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    _needs_sandboxes()
    e = _Env(tmp_path_factory.mktemp("connect-ssh"))
    try:
        e.run(e.gateway.start())
        pki = e.gateway.pki
        e.client = OpenShellClient(e.gateway.endpoint, pki.ca_cert, pki.client_cert, pki.client_key)
        e.client.create_sandbox(READY)
        e.client.create_sandbox(BROKEN)
        e.client.wait_ready(READY, timeout=90)
        # A supervisor that dies makes its sandbox ERROR (the gateway's liveness monitor).
        broken = e.client.wait_ready(BROKEN, timeout=90)
        os.kill(e.gateway.driver._pid(broken.id), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while e.client.get_sandbox(BROKEN).phase != "ERROR" and time.monotonic() < deadline:
            time.sleep(0.2)
        yield e
    finally:
        e.close()


def _tunnel(env, sandbox_id: str, token: str):
    return open_tunnel(env.client.endpoint, env.client.tunnel_ssl_context(), sandbox_id, token, timeout=10)


def _raw_request(env, head: bytes) -> bytes:
    ctx = env.client.tunnel_ssl_context()
    with socket.create_connection(("127.0.0.1", env.gateway.port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(head)
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    return data


def _run(transport, command: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    chan = transport.open_session()
    chan.exec_command(command)
    if stdin:
        chan.sendall(stdin)
    chan.shutdown_write()
    out, err = chan.makefile("rb").read(), chan.makefile_stderr("rb").read()
    return chan.recv_exit_status(), out, err


# --------------------------------------------------------------------------- the tunnel


def test_tunnel_runs_commands_as_the_sandbox_user_with_separate_stdout_stderr(env):
    transport = open_ssh_transport(env.client, READY)
    try:
        code, out, err = _run(transport, "id -un; echo oops >&2; cat; exit 7", stdin=b"piped\n")
    finally:
        transport.close()
    assert code == 7
    assert out == b"sandbox\npiped\n"
    assert err == b"oops\n"


def test_session_token_is_random_expiring_and_bound_to_one_sandbox(env):
    a, b = env.client.create_ssh_session(READY), env.client.create_ssh_session(READY)
    assert a.token != b.token and len(a.token) >= 40
    assert a.sandbox_id == env.client.get_sandbox(READY).id
    assert time.time() < a.expires_at <= time.time() + 3600 + 5
    assert a.token not in repr(a)
    broken = env.client.create_ssh_session(BROKEN)
    with pytest.raises(TunnelError) as exc:  # a token of another sandbox opens nothing here
        _tunnel(env, a.sandbox_id, broken.token)
    assert exc.value.status == 401


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 200])
def test_missing_or_wrong_token_is_401(env, token):
    sid = env.client.get_sandbox(READY).id
    with pytest.raises(TunnelError) as exc:
        _tunnel(env, sid, token)
    assert exc.value.status == 401
    assert "token" in str(exc.value)


def test_unknown_sandbox_is_404(env):
    with pytest.raises(TunnelError) as exc:
        _tunnel(env, "0" * 32, env.client.create_ssh_session(READY).token)
    assert exc.value.status == 404


def test_sandbox_not_ready_is_412(env):
    assert env.client.get_sandbox(BROKEN).phase == "ERROR"
    session = env.client.create_ssh_session(BROKEN)
    with pytest.raises(TunnelError) as exc:
        _tunnel(env, session.sandbox_id, session.token)
    assert exc.value.status == 412
    assert "not READY" in str(exc.value)


def test_expired_token_is_401(env):
    sessions = env.core.ssh_sessions
    old = sessions.ttl
    sessions.ttl = 0.3
    try:
        session = env.client.create_ssh_session(READY)
    finally:
        sessions.ttl = old
    time.sleep(0.5)
    with pytest.raises(TunnelError) as exc:
        _tunnel(env, session.sandbox_id, session.token)
    assert exc.value.status == 401


def test_revoked_token_is_401_and_revoking_again_is_not_found(env):
    session = env.client.create_ssh_session(READY)
    _tunnel(env, session.sandbox_id, session.token).close()  # works before
    assert env.client.revoke_ssh_session(session.token) == "COMPLETED"
    with pytest.raises(TunnelError) as exc:
        _tunnel(env, session.sandbox_id, session.token)
    assert exc.value.status == 401
    with pytest.raises(OpenShellError, match="NOT_FOUND"):
        env.client.revoke_ssh_session(session.token)
    assert env.client.revoke_ssh_session(session.token, allow_missing=True) == "ALREADY_ABSENT"


def _wait_released(env, sandbox_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while env.core.ssh_sessions._open.get(sandbox_id) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_more_than_three_tunnels_per_token_is_429_until_one_closes(env):
    session = env.client.create_ssh_session(READY)
    socks = [_tunnel(env, session.sandbox_id, session.token) for _ in range(MAX_TUNNELS_PER_TOKEN)]
    try:
        with pytest.raises(TunnelError) as exc:
            _tunnel(env, session.sandbox_id, session.token)
        assert exc.value.status == 429
        socks.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the gateway notices the close asynchronously
            try:
                socks.append(_tunnel(env, session.sandbox_id, session.token))
                break
            except TunnelError as again:
                assert again.status == 429 and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        for s in socks:
            s.close()
        _wait_released(env, session.sandbox_id)


def test_more_than_twenty_tunnels_per_sandbox_is_429(env):
    sid = env.client.get_sandbox(READY).id
    socks = []
    try:
        for i in range(MAX_TUNNELS_PER_SANDBOX):
            if i % MAX_TUNNELS_PER_TOKEN == 0:
                token = env.client.create_ssh_session(READY).token
            socks.append(_tunnel(env, sid, token))
        fresh = env.client.create_ssh_session(READY)
        with pytest.raises(TunnelError) as exc:
            _tunnel(env, sid, fresh.token)
        assert exc.value.status == 429
        assert "sandbox" in str(exc.value)
    finally:
        for s in socks:
            s.close()
        _wait_released(env, sid)


def test_non_connect_method_is_405_and_the_token_is_not_logged(env):
    session = env.client.create_ssh_session(READY)
    head = f"GET /connect/ssh HTTP/1.1\r\nHost: x\r\nx-sandbox-id: {session.sandbox_id}\r\nx-sandbox-token: {session.token}\r\n\r\n"
    answer = _raw_request(env, head.encode())
    assert answer.startswith(b"HTTP/1.1 405 ")
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert "error" in json.loads(body)
    log_text = env.gateway.paths.log.read_text() if env.gateway.paths.log.exists() else ""
    assert session.token not in log_text


# --------------------------------------------------------------------------- SSH server features


def test_sftp_runs_inside_the_sandbox_with_its_isolation(env):
    transport = open_ssh_transport(env.client, READY)
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        sftp.putfo(io.BytesIO(b"hello"), "/sandbox/sftp.txt")
        st = sftp.stat("/sandbox/sftp.txt")
        with pytest.raises(PermissionError):
            sftp.putfo(io.BytesIO(b"x"), "/usr/ia-sftp-probe")
        assert "sftp.txt" in sftp.listdir("/sandbox")
        code, out, _ = _run(transport, "id -u")
    finally:
        transport.close()
    assert st.st_size == 5
    assert st.st_uid == int(out) != 0  # written by the sandbox user, not root
    assert not os.path.exists("/usr/ia-sftp-probe")


def test_port_forward_reaches_loopback_in_the_sandbox_only(env):
    transport = open_ssh_transport(env.client, READY)
    try:
        server = transport.open_session()
        server.exec_command(
            'exec python3 -c "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n'
            "s.bind(('127.0.0.1', 18931)); s.listen(); print('up', flush=True)\nc,_=s.accept(); c.sendall(c.recv(100).upper()); c.close()\""
        )
        assert server.makefile("rb").readline() == b"up\n"
        chan = transport.open_channel("direct-tcpip", ("127.0.0.1", 18931), ("127.0.0.1", 1))
        chan.sendall(b"ping")
        assert chan.makefile("rb").read() == b"PING"
        # the same port on the host is not where the forward goes
        for target in [("10.199.30.9", 18931), ("example.com", 443), ("0.0.0.0", 18931)]:
            with pytest.raises(paramiko.ChannelException) as exc:
                transport.open_channel("direct-tcpip", target, ("127.0.0.1", 1))
            assert exc.value.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with pytest.raises(paramiko.ChannelException) as exc:  # nothing listens there
            transport.open_channel("direct-tcpip", ("127.0.0.1", 1), ("127.0.0.1", 1))
        assert exc.value.code == paramiko.OPEN_FAILED_CONNECT_FAILED
    finally:
        transport.close()


def test_unknown_subsystem_is_refused(env):
    transport = open_ssh_transport(env.client, READY)
    try:
        chan = transport.open_session()
        with pytest.raises(paramiko.SSHException):
            chan.invoke_subsystem("netconf")
    finally:
        transport.close()


# --------------------------------------------------------------------------- ExecSandboxInteractive


def test_interactive_exec_streams_stdin_and_keeps_stdout_stderr_apart(env):
    events = list(env.client.exec_interactive(READY, ["sh", "-c", "cat; echo E >&2; exit 3"], [b"one ", b"two\n"]))
    out = b"".join(e.data for e in events if e.kind == "stdout")
    err = b"".join(e.data for e in events if e.kind == "stderr")
    assert (out, err) == (b"one two\n", b"E\n")
    assert [e.kind for e in events][-1] == "exit" and events[-1].exit_code == 3
    assert sum(e.kind == "exit" for e in events) == 1


def test_interactive_exec_with_tty_has_the_window_size_and_follows_resizes(env):
    first_size = threading.Event()  # the first `stty size` has printed (no sleep: load varies)

    def inputs():
        first_size.wait(60)
        yield (100, 33)  # applied before the next chunk is written
        yield b"first\n"
        yield b"second\n"

    script = "stty size; read a; stty size; read b; echo got-$a-$b; [ -t 0 ] && exit 9"
    events = []
    for event in env.client.exec_interactive(READY, ["sh", "-c", script], inputs(), tty=True, cols=90, rows=30):
        events.append(event)
        if b"30 90" in b"".join(e.data for e in events if e.kind == "stdout"):
            first_size.set()
    out = b"".join(e.data for e in events if e.kind == "stdout").decode()
    assert "30 90" in out and "33 100" in out and "got-first-second" in out
    assert events[-1].exit_code == 9


def test_interactive_exec_ends_when_the_command_ends_even_if_stdin_never_closes(env):
    stop = threading.Event()

    def endless():
        while not stop.is_set():
            time.sleep(0.1)
            yield b""
        return

    t0 = time.monotonic()
    try:
        events = list(env.client.exec_interactive(READY, ["sh", "-c", "echo done"], endless()))
    finally:
        stop.set()
    assert time.monotonic() - t0 < 15
    assert events[-1].kind == "exit" and events[-1].exit_code == 0
    assert b"done" in b"".join(e.data for e in events)
