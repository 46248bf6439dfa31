"""The gateway process: state directory, pid lock, lifecycle, and the real services behind the front."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from openshell._proto import openshell_pb2, openshell_pb2_grpc
from openshell.gateway import paths as gpaths
from openshell.gateway.front import PortInUseError
from openshell.gateway.server import (
    Gateway,
    GatewayAlreadyRunning,
    GatewayError,
    read_pid,
)
from openshell.gateway.tls import client_context
from openshell.plugin import hookimpl
from openshell.plugin.loader import get_registry


@pytest.fixture
def gw_state_dir(tmp_path):
    """The gateway's state directory (its grpc socket may live elsewhere if this path is long)."""
    return tmp_path / "state"


class _GatewayThread:
    """Runs a :class:`Gateway` on its own event loop in a thread (clients here are blocking)."""

    def __init__(self, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gateway = Gateway(**kwargs)

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            if self.gateway.front is not None or self.gateway.grpc_server is not None:
                self.run(self.gateway.stop(grace=0.5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def gw_thread(gw_state_dir):
    """A started gateway on a free loopback port; stopped even when the test fails."""
    gt = _GatewayThread(name="t", host="127.0.0.1", port=0, driver="local", state_dir=gw_state_dir)
    try:
        gt.run(gt.gateway.start())
        yield gt
    finally:
        gt.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _healthz(gw: Gateway) -> bytes:
    pki = gw.pki
    ctx = client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return data


def _channel(gw: Gateway, cert: Path | None = None, key: Path | None = None) -> grpc.Channel:
    pki = gw.pki
    creds = grpc.ssl_channel_credentials(
        pki.ca_cert.read_bytes(),
        (key or pki.client_key).read_bytes(),
        (cert or pki.client_cert).read_bytes(),
    )
    return grpc.secure_channel(f"127.0.0.1:{gw.port}", creds)


# --------------------------------------------------------------------------- paths


def test_state_dir_follows_env_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENSHELL_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert gpaths.state_dir_for("dev") == tmp_path / "xdg" / "openshell" / "gateways" / "dev"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert gpaths.state_dir_for("dev") == Path.home() / ".local" / "state" / "openshell" / "gateways" / "dev"
    monkeypatch.setenv("OPENSHELL_STATE_DIR", str(tmp_path / "explicit"))
    assert gpaths.state_dir_for("dev") == tmp_path / "explicit"
    assert gpaths.state_dir_for("dev", tmp_path / "flag") == tmp_path / "flag"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 64])
def test_gateway_names_that_cannot_be_directories_are_refused(bad):
    with pytest.raises(gpaths.InvalidGatewayName):
        gpaths.check_name(bad)


# --------------------------------------------------------------------------- lifecycle


def test_started_gateway_has_private_state_pid_and_socket(gw_thread):
    gw = gw_thread.gateway
    root = gw.paths.root
    assert _mode(root) == 0o700 and _mode(root / "pki") == 0o700 and _mode(root / "sandboxes") == 0o700
    assert gw.grpc_socket == str(gw.paths.grpc_sock)
    assert _mode(gw.paths.grpc_sock) == 0o600 and stat.S_ISSOCK(gw.paths.grpc_sock.lstat().st_mode)
    assert gw.paths.pid.read_text().strip() == str(os.getpid())
    assert read_pid(gw.paths) == os.getpid()
    assert gpaths.read_settings(gw.paths) == gpaths.GatewaySettings("t", "127.0.0.1", gw.port, "local")
    assert gw.endpoint == f"https://127.0.0.1:{gw.port}"
    assert gw.paths.log.parent == root


def test_healthz_answers_over_mtls(gw_thread):
    data = _healthz(gw_thread.gateway)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"status": "ok"}')


def test_grpc_health_and_public_service_reach_the_core_through_the_front(gw_thread):
    gw = gw_thread.gateway
    with _channel(gw) as channel:
        assert channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == b"\x08\x01"
        reply = openshell_pb2_grpc.OpenShellStub(channel).Health(openshell_pb2.HealthRequest(), timeout=5)
    assert reply.status == 1  # HEALTHY


def test_supervisor_certificate_reaches_grpc_too(gw_thread):
    gw = gw_thread.gateway
    with _channel(gw, gw.pki.supervisor_cert, gw.pki.supervisor_key) as channel:
        assert channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == b"\x08\x01"


def test_current_user_is_the_client_certificate_of_each_connection(gw_thread):
    from grpc_status import rpc_status
    from openshell.gateway.tls import SUPERVISOR_CN, USER_CN

    gw = gw_thread.gateway
    request = openshell_pb2.GetCurrentUserRequest()
    with _channel(gw) as user, _channel(gw, gw.pki.supervisor_cert, gw.pki.supervisor_key) as supervisor:
        assert openshell_pb2_grpc.OpenShellStub(user).GetCurrentUser(request, timeout=5).subject == f"CN={USER_CN}"
        reply = openshell_pb2_grpc.OpenShellStub(supervisor).GetCurrentUser(request, timeout=5)
        assert (reply.subject, reply.display_name, reply.identity_provider) == (f"CN={SUPERVISOR_CN}", SUPERVISOR_CN, "mtls")
    # Straight to the gRPC socket (not through the front): no certificate, no identity.
    with grpc.insecure_channel(f"unix:{gw.grpc_socket}") as direct:
        with pytest.raises(grpc.RpcError) as info:
            openshell_pb2_grpc.OpenShellStub(direct).GetCurrentUser(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rpc_status.from_call(info.value)
    assert status is not None and status.message == info.value.details()
    assert any(d.type_url.endswith("google.rpc.ErrorInfo") and b"NO_CLIENT_IDENTITY" in d.value for d in status.details)


def test_grpc_without_client_certificate_is_refused(gw_thread):
    gw = gw_thread.gateway
    creds = grpc.ssl_channel_credentials(gw.pki.ca_cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{gw.port}", creds) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_second_gateway_on_the_same_state_dir_is_refused(gw_thread):
    gt = _GatewayThread(name="t", port=0, state_dir=gw_thread.gateway.paths.root)
    try:
        with pytest.raises(GatewayAlreadyRunning, match=str(os.getpid())):
            gt.run(gt.gateway.start())
    finally:
        gt.close()
    # the refused start must not have disturbed the running one
    assert _healthz(gw_thread.gateway).startswith(b"HTTP/1.1 200 ")
    assert gw_thread.gateway.paths.grpc_sock.exists()


def test_busy_port_fails_with_port_in_use_and_leaves_no_pid(gw_state_dir):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    gt = _GatewayThread(name="t", port=port, state_dir=gw_state_dir)
    try:
        with pytest.raises(
            PortInUseError, match=f"port {port} on 127.0.0.1 is already in use; start the gateway on another port with 'openshell gateway start --port N'"
        ):
            gt.run(gt.gateway.start())
        assert not (gw_state_dir / "gateway.pid").exists()
        assert read_pid(gpaths.GatewayPaths(gw_state_dir)) is None
    finally:
        gt.close()
        holder.close()


def test_stop_releases_port_socket_and_pid_and_restart_reuses_pki(gw_state_dir):
    gt = _GatewayThread(name="t", port=0, state_dir=gw_state_dir)
    try:
        gt.run(gt.gateway.start())
        port = gt.gateway.port
        ca = gt.gateway.pki.ca_cert.read_bytes()
        gt.run(gt.gateway.stop(grace=0.5))
        paths = gpaths.GatewayPaths(gw_state_dir)
        assert not paths.pid.exists() and not paths.grpc_sock.exists()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        again = Gateway(name="t", port=port, state_dir=gw_state_dir)
        gt.gateway = again
        gt.run(again.start())  # same port is free again, PKI reused
        assert again.pki.ca_cert.read_bytes() == ca
        assert _healthz(again).startswith(b"HTTP/1.1 200 ")
    finally:
        gt.close()


def test_unknown_driver_is_a_clear_start_error(gw_state_dir):
    gt = _GatewayThread(name="t", port=0, driver="no-such-driver", state_dir=gw_state_dir)
    try:
        with pytest.raises(GatewayError, match="no-such-driver"):
            gt.run(gt.gateway.start())
        assert not (gw_state_dir / "gateway.pid").exists()
    finally:
        gt.close()


def test_too_long_state_dir_puts_the_grpc_socket_in_a_private_temp_dir(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    gt = _GatewayThread(name="t", port=0, state_dir=deep)
    try:
        gt.run(gt.gateway.start())
        sock = Path(gt.gateway.grpc_socket)
        assert sock.parent != deep and _mode(sock.parent) == 0o700 and _mode(sock) == 0o600
        with _channel(gt.gateway) as channel:
            assert channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == b"\x08\x01"
        gt.run(gt.gateway.stop(grace=0.5))
        assert not sock.parent.exists()
    finally:
        gt.close()


def test_gateway_started_hook_receives_a_gateway_event(gw_state_dir):
    from openshell.plugin import GatewayEvent

    seen = []

    class Listener:
        @hookimpl
        def gateway_started(self, gateway):
            assert isinstance(gateway, GatewayEvent)  # a snapshot, not the Gateway with its keys
            seen.append((gateway.name, gateway.port, gateway.endpoint.endswith(f":{gateway.port}")))

    registry = get_registry()
    registry.register_plugin(Listener(), name="test:gateway-started")
    gt = _GatewayThread(name="hooked", port=0, state_dir=gw_state_dir)
    try:
        gt.run(gt.gateway.start())
        assert seen == [("hooked", gt.gateway.port, True)]
    finally:
        gt.close()
        registry.unregister_plugin("test:gateway-started")


# --------------------------------------------------------------------------- python -m openshell.gateway


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_module_runs_in_foreground_and_stops_cleanly_on_sigterm(gw_state_dir):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "openshell.gateway", "--name", "fg", "--port", str(port), "--state-dir", str(gw_state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        paths = gpaths.GatewayPaths(gw_state_dir)
        deadline = time.monotonic() + 20
        while read_pid(paths) != proc.pid or not paths.grpc_sock.exists() or not (paths.pki / "client.key").exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        ctx = client_context(paths.pki / "ca.crt", paths.pki / "client.crt", paths.pki / "client.key")
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert conn.recv(100).startswith(b"HTTP/1.1 200 ")
                    break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not paths.pid.exists() and not paths.grpc_sock.exists()
        log = paths.log.read_text()
        assert "gateway started name=fg" in log and "gateway stopped name=fg" in log
        assert _mode(paths.log) == 0o600
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        proc.stdout.close()


def test_module_exits_1_with_the_reason_in_the_log_when_the_port_is_busy(gw_state_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "openshell.gateway", "--name", "busy", "--port", str(port), "--state-dir", str(gw_state_dir)],
            capture_output=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert f"gateway failed to start: port {port} on 127.0.0.1 is already in use" in (gw_state_dir / "gateway.log").read_text()
