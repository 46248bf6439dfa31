"""openshell.client.sdk against a real mTLS grpc.aio server on loopback.

The server runs our services with a fake compute driver; the client is built
from the DESIGN.md §4 client files, like the CLI builds it.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import grpc
import pytest
from openshell._proto import openshell_pb2, supervisor_pb2, supervisor_pb2_grpc
from openshell.client import sdk
from openshell.client.config import set_active, write_gateway_config
from openshell.gateway import core as gc
from openshell.gateway import sandbox_exec
from openshell.gateway.service import add_services
from openshell.gateway.store import Store
from openshell.gateway.tls import ensure_pki
from openshell.plugin.kinds import (
    DriverContext,
    SandboxStatus,
)
from openshell.plugin.testing import RecordingDriver

pytestmark = pytest.mark.timeout(60)


class TlsGateway:
    """Our services behind gRPC mTLS on 127.0.0.1:<free port>, on a loop thread."""

    def __init__(self, tmp) -> None:
        self.pki = ensure_pki(tmp / "pki")
        self.driver = RecordingDriver(DriverContext(state_dir=str(tmp), gateway_endpoint=""))
        self.store = Store(tmp / "gateway.db")
        self.core = gc.GatewayCore(tmp, self.store, self.driver, version="1.2.3", monitor_interval=0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        self.endpoint = f"https://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self.server = grpc.aio.server()
        add_services(self.server, self.core)
        creds = grpc.ssl_server_credentials(
            [(self.pki.server_key.read_bytes(), self.pki.server_cert.read_bytes())],
            root_certificates=self.pki.ca_cert.read_bytes(),
            require_client_auth=True,
        )
        port = self.server.add_secure_port("127.0.0.1:0", creds)
        await self.server.start()
        return port

    def make_ready(self, sandbox_id: str) -> None:
        creds = grpc.ssl_channel_credentials(self.pki.ca_cert.read_bytes(), self.pki.supervisor_key.read_bytes(), self.pki.supervisor_cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{self.port}", creds) as ch:
            supervisor_pb2_grpc.SupervisorStub(ch).ReportStatus(
                supervisor_pb2.ReportStatusRequest(phase=openshell_pb2.SANDBOX_PHASE_READY),
                metadata=(("x-sandbox-id", sandbox_id), ("x-sandbox-secret", self.driver.created[sandbox_id]["secret"])),
                timeout=10,
            )

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def tls_gateway(tmp_path):
    gw = TlsGateway(tmp_path)
    try:
        yield gw
    finally:
        gw.close()


@pytest.fixture
def sdk_client(tls_gateway, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    pki = tls_gateway.pki
    write_gateway_config("wiretest", tls_gateway.endpoint, pki.ca_cert.read_bytes(), pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    set_active("wiretest")
    client = sdk.OpenShellClient.from_config()
    try:
        yield client
    finally:
        client.close()


def test_health_over_mtls_from_client_files(sdk_client):
    assert sdk_client.health() == "1.2.3"


def test_create_wait_exec_list_delete(sdk_client, tls_gateway, monkeypatch):
    sb = sdk_client.create_sandbox(
        "demo",
        policy_yaml="version: 1\n",
        extra_hosts=["api.test:10.199.0.5"],
        env={"A": "1"},
        labels={"team": "x"},
        command=["sleep", "infinity"],
    )
    assert (sb.name, sb.phase, sb.extra_hosts, sb.command) == ("demo", "PROVISIONING", ("api.test:10.199.0.5",), ("sleep", "infinity"))
    with pytest.raises(sdk.WaitTimeout, match="still PROVISIONING"):
        sdk_client.wait_ready("demo", timeout=0.3)
    tls_gateway.make_ready(sb.id)
    assert sdk_client.wait_ready("demo", timeout=5).phase == "READY"

    async def fake(endpoint, secret, argv, stdin=None, **kwargs):
        if argv[0] == "cat":
            yield sandbox_exec.ExecEvent("stdout", stdin or b"")
        else:
            yield sandbox_exec.ExecEvent("stdout", b" ".join(a.encode() for a in argv[1:]) + b"\n")
        yield sandbox_exec.ExecEvent("exit", exit_code=0)

    monkeypatch.setattr(sandbox_exec, "exec_in_sandbox", fake)
    assert sdk_client.run("demo", ["echo", "hello"]) == (0, b"hello\n", b"")
    events = list(sdk_client.exec("demo", ["echo", "x"], timeout=5))
    assert [e.kind for e in events] == ["stdout", "exit"]
    assert sdk_client.run("demo", ["cat"], stdin=iter([b"a", b"b"])) == (0, b"ab", b"")
    assert sdk_client.get_sandbox("demo").created.endswith("Z")

    assert [s.name for s in sdk_client.list_sandboxes({"team": "x"})] == ["demo"]
    assert sdk_client.list_sandboxes("team=y") == []
    assert sdk_client.delete_sandbox("demo") == "COMPLETED"
    with pytest.raises(sdk.SandboxNotFound, match="sandbox 'demo' not found; see 'openshell sandbox list'"):
        sdk_client.get_sandbox("demo")
    assert sdk_client.delete_sandbox("demo", allow_missing=True) == "ALREADY_ABSENT"


def test_list_follows_pages(sdk_client):
    for i in range(5):
        sdk_client.create_sandbox(f"s{i}")
    assert [s.name for s in sdk_client.list_sandboxes(page_size=2)] == [f"s{i}" for i in range(5)]


def test_errors_are_typed_and_name_the_fix(sdk_client):
    sdk_client.create_sandbox("demo")
    with pytest.raises(sdk.SandboxExists, match="already exists"):
        sdk_client.create_sandbox("demo")
    with pytest.raises(sdk.InvalidRequest) as info:
        sdk_client.create_sandbox("other", policy_yaml="version: 1\nbogus_key: 1\n")
    assert info.value.field.startswith("spec.policy_yaml")
    with pytest.raises(sdk.SandboxNotReady, match="PROVISIONING"):
        list(sdk_client.exec("demo", ["true"]))
    with pytest.raises(sdk.SandboxNotFound):
        sdk_client.delete_sandbox("ghost")
    with pytest.raises(sdk.PolicyRevisionNotFound, match="policy revision 9 of sandbox 'demo' not found"):
        sdk_client.get_policy("demo", 9)
    # The class follows the gateway's reason, not the message: a missing workspace
    # in a call naming a sandbox is not a missing sandbox.
    sdk_client.workspace = "nope"
    with pytest.raises(sdk.NotFound, match="workspace 'nope' not found") as info:
        sdk_client.get_sandbox("demo")
    assert not isinstance(info.value, sdk.SandboxNotFound)


def test_error_phase_while_waiting_raises_with_reason(sdk_client, tls_gateway):
    sb = sdk_client.create_sandbox("demo")
    asyncio.run_coroutine_threadsafe(tls_gateway.core.apply_driver_status(sb.id, SandboxStatus("ERROR", "supervisor exited")), tls_gateway.loop).result(10)
    with pytest.raises(sdk.SandboxNotReady, match="supervisor exited"):
        sdk_client.wait_ready("demo", timeout=5)


def test_wait_ready_follows_the_status_stream_to_ready_or_deletion(sdk_client, tls_gateway):
    import concurrent.futures

    sb = sdk_client.create_sandbox("demo")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(sdk_client.wait_ready, "demo", 30)
        with pytest.raises(concurrent.futures.TimeoutError):
            waiting.result(0.3)  # still PROVISIONING: nothing comes back early
        tls_gateway.make_ready(sb.id)
        assert waiting.result(10).phase == "READY"
        sdk_client.create_sandbox("gone")
        waiting = pool.submit(sdk_client.wait_ready, "gone", 30)
        with pytest.raises(concurrent.futures.TimeoutError):
            waiting.result(0.3)
        sdk_client.delete_sandbox("gone")
        with pytest.raises(sdk.SandboxNotFound, match="^sandbox 'gone' was deleted while waiting for it to become READY$"):
            waiting.result(10)


def test_gateway_not_running_is_gateway_unavailable(tls_gateway, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pki = tls_gateway.pki
    client = sdk.OpenShellClient(f"https://127.0.0.1:{port}", pki.ca_cert, pki.client_cert, pki.client_key, timeout=2)
    with pytest.raises(sdk.GatewayUnavailable, match="openshell gateway start"):
        client.health()
    client.close()


def test_unconfigured_client_says_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    with pytest.raises(sdk.GatewayUnavailable, match="openshell gateway start"):
        sdk.OpenShellClient.from_config()
