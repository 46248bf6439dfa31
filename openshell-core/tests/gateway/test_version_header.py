"""The gateway's version in initial metadata (``openshell.gateway.versions``) and the client side
(``openshell.client.versions``) over a real grpc.aio server (``WireServer`` of test_service.py).

``WireServer`` without the interceptor plays a gateway older than the header.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from openshell._proto import openshell_pb2, openshell_pb2_grpc
from openshell.client.versions import VERSION_METADATA_KEY, VersionInterceptor, compare, release
from openshell.gateway.service import add_services
from openshell.gateway.versions import VersionHeader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_service import DEFAULT, WireServer  # noqa: E402

pytestmark = pytest.mark.timeout(60)


class HeaderServer(WireServer):
    """``WireServer`` with the version interceptor, as ``openshell.gateway.server`` builds it."""

    async def _start(self) -> grpc.aio.Server:
        server = grpc.aio.server(interceptors=[VersionHeader(self.core.version)])
        add_services(server, self.core)
        server.add_insecure_port(f"unix:{self.sock}")
        await server.start()
        return server


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.probes = 0

    def probe(self) -> str:
        self.probes += 1
        return "0.0.1-from-health"


def _stub(server: WireServer, rec: Recorder) -> openshell_pb2_grpc.OpenShellStub:
    channel = grpc.intercept_channel(grpc.insecure_channel(f"unix:{server.sock}"), VersionInterceptor(rec.seen.append, rec.probe))
    return openshell_pb2_grpc.OpenShellStub(channel)


@pytest.fixture
def header_server(tmp_path):
    server = HeaderServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def old_server(tmp_path):
    server = WireServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


def test_unary_answer_carries_version_once_no_probe(header_server):
    rec = Recorder()
    stub = _stub(header_server, rec)
    for _ in range(3):
        stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT), timeout=10)
    assert rec.seen == ["9.9.9"] and rec.probes == 0
    _, call = header_server.stub.Health.with_call(openshell_pb2.HealthRequest(), timeout=10)
    assert (VERSION_METADATA_KEY, "9.9.9") in tuple(call.initial_metadata())


def test_error_answer_still_carries_version(header_server):
    rec = Recorder()
    stub = _stub(header_server, rec)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="nope", workspace_scope=DEFAULT), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # unary failures come back without metadata from the interceptor API: learned on the next answer
    stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT), timeout=10)
    assert rec.seen == ["9.9.9"] and rec.probes == 0


def test_server_stream_reports_after_first_answer(header_server):
    rec = Recorder()
    stub = _stub(header_server, rec)
    call = stub.ExecSandbox(openshell_pb2.ExecSandboxRequest(sandbox="nope", command=["true"], workspace_scope=DEFAULT), timeout=10)
    assert rec.seen == []  # nothing read before the caller iterates
    with pytest.raises(grpc.RpcError):
        list(call)
    assert rec.seen == ["9.9.9"] and rec.probes == 0


def test_old_gateway_is_probed_once(old_server):
    rec = Recorder()
    stub = _stub(old_server, rec)
    for _ in range(2):
        stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT), timeout=10)
    assert rec.seen == ["0.0.1-from-health"] and rec.probes == 1


def test_unreachable_gateway_learns_nothing(tmp_path):
    rec = Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel(f"unix:{tmp_path / 'none.sock'}"), VersionInterceptor(rec.seen.append, rec.probe))
    with pytest.raises(grpc.RpcError):
        openshell_pb2_grpc.OpenShellStub(channel).Health(openshell_pb2.HealthRequest(), timeout=2)
    assert rec.seen == [] and rec.probes == 0


@pytest.mark.parametrize(
    ("local", "gateway", "verdict"),
    [
        ("0.1.0", "0.1.0", None),
        ("0.1.1", "0.1.0", "older"),  # older by a patch: warn
        ("0.1.0", "0.1.1", None),  # newer by a patch: same protocol
        ("0.2.0", "0.1.5", "older"),
        ("0.1.0", "0.2.0", "newer"),
        ("1.0.0", "0.9.9", "older"),
        ("0.1.0", "0.1.0rc1", None),  # same release
        ("0.1.0", "weird", "different"),
    ],
)
def test_compare(local, gateway, verdict):
    assert compare(local, gateway) == verdict


def test_release():
    assert release("v1.2") == (1, 2, 0) and release("0.2.1rc1") == (0, 2, 1) and release("dev") is None
