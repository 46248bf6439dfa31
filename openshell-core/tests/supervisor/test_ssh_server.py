"""The supervisor's SSH server and the gateway's exec client, over a real unix socket.

The launcher here is a plain subprocess: isolation of SSH sessions is covered by
the end-to-end tests, this file covers the protocol: preface, exec, streams,
exit codes, stdin, timeouts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess

import pytest
from openshell.gateway.sandbox_exec import SandboxUnreachable, exec_in_sandbox, open_ssh_socket
from openshell.plugin.kinds import SshEndpoint
from openshell.supervisor.ssh_server import SshServer

SECRET = b"k" * 32


def _plain_launch(req, stdin, stdout, stderr):
    env = {"PATH": "/usr/bin:/bin", **req.env}
    return subprocess.Popen(req.argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, start_new_session=True)


@pytest.fixture
def server(tmp_path):
    srv = SshServer(str(tmp_path / "ssh.sock"), SECRET, _plain_launch)
    srv.start()
    yield srv
    srv.close()


def _run(server, argv, **kw):
    async def go():
        out, err, codes = b"", b"", []
        async for ev in exec_in_sandbox(SshEndpoint(unix_path=server.path), SECRET, argv, **kw):
            if ev.kind == "stdout":
                out += ev.data
            elif ev.kind == "stderr":
                err += ev.data
            else:
                codes.append(ev.exit_code)
        return out, err, codes

    return asyncio.run(go())


def test_socket_is_private_to_root(server):
    assert os.stat(server.path).st_mode & 0o777 == 0o600


def test_exec_streams_stdout_and_stderr_separately_and_one_exit(server):
    out, err, codes = _run(server, ["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    assert out == b"hello\n"
    assert err == b"oops\n"
    assert codes == [3]


def test_exec_passes_env_workdir_and_stdin(server, tmp_path):
    out, _, codes = _run(server, ["sh", "-c", 'echo "$GREETING $(pwd)"; cat'], env={"GREETING": "hi"}, workdir=str(tmp_path), stdin=b"from stdin\n")
    assert out == f"hi {tmp_path}\nfrom stdin\n".encode()
    assert codes == [0]


def test_exec_arguments_are_not_reinterpreted_by_a_shell(server):
    out, _, _ = _run(server, ["printf", "%s|", "a b", "$HOME", "';rm -rf /'"])
    assert out == b"a b|$HOME|';rm -rf /'|"


def test_exec_whose_stdin_never_closes_ends_with_the_command(server):
    async def forever():
        while True:
            await asyncio.sleep(3600)
            yield b""

    out, _, codes = _run(server, ["echo", "done"], stdin=forever())
    assert out == b"done\n" and codes == [0]


def test_exec_timeout_gives_124_and_kills_the_command(server, tmp_path):
    marker = tmp_path / "still-running"
    _, _, codes = _run(server, ["sh", "-c", f"sleep 2; touch {marker}"], timeout=0.5)
    assert codes == [124]
    import time

    time.sleep(2.5)
    assert not marker.exists()


def test_large_output_arrives_complete(server):
    out, _, codes = _run(server, ["head", "-c", "3000000", "/dev/zero"])
    assert len(out) == 3_000_000 and codes == [0]


def test_wrong_secret_is_refused_before_ssh(server):
    with pytest.raises(SandboxUnreachable, match="rejected"):
        open_ssh_socket(SshEndpoint(unix_path=server.path), b"wrong" * 8)


def test_garbage_instead_of_preface_gets_err_and_close(server):
    s = socket.socket(socket.AF_UNIX)
    s.connect(server.path)
    s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    assert s.recv(16) == b"ERR\n"
    assert s.recv(16) == b""


def test_tcp_listener_serves_exec_on_the_pod_ip_from_the_environment(monkeypatch):
    """A pod's supervisor (kubernetes driver) listens on ``tcp://:PORT``: the pod's own IP."""
    from openshell.supervisor.ssh_server import tcp_address

    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENSHELL_POD_IP", "127.0.0.1")
    srv = SshServer(f"tcp://:{port}", SECRET, _plain_launch)
    srv.start()
    try:

        async def go():
            out = b""
            async for ev in exec_in_sandbox(SshEndpoint(host="127.0.0.1", port=port), SECRET, ["echo", "pod"]):
                out += ev.data if ev.kind == "stdout" else b""
            return out

        assert asyncio.run(go()) == b"pod\n"
        with pytest.raises(SandboxUnreachable, match="rejected"):
            open_ssh_socket(SshEndpoint(host="127.0.0.1", port=port), b"x" * 32)
    finally:
        srv.close()
    monkeypatch.delenv("OPENSHELL_POD_IP")
    with pytest.raises(ValueError, match="OPENSHELL_POD_IP"):
        tcp_address("tcp://:2222")
    for bad in ("tcp://host", "tcp://h:0", "udp://h:1", "tcp://h:1/x"):
        with pytest.raises(ValueError):
            tcp_address(bad)
