"""Providers and inference routes over real gRPC mTLS: CRUD, redaction, encryption at rest,
supervisor-facing environment and the inference bundle watch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading

import grpc
import pytest
from openshell._proto import supervisor_pb2, supervisor_pb2_grpc
from openshell.client import sdk
from openshell.gateway import core as gc
from openshell.gateway.secretbox import KEY_FILE
from openshell.gateway.service import add_services
from openshell.gateway.store import Store
from openshell.gateway.tls import ensure_pki
from openshell.plugin.kinds import DriverContext
from openshell.plugin.testing import RecordingDriver

pytestmark = pytest.mark.timeout(60)
SECRET = "sk-ant-REAL-VALUE-0123456789"


@pytest.fixture
def gw(tmp_path):
    pki = ensure_pki(tmp_path / "pki")
    driver = RecordingDriver(DriverContext(state_dir=str(tmp_path), gateway_endpoint=""))
    store = Store(tmp_path / "gateway.db")
    core = gc.GatewayCore(tmp_path, store, driver, version="t", monitor_interval=0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        add_services(server, core)
        creds = grpc.ssl_server_credentials(
            [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())], root_certificates=pki.ca_cert.read_bytes(), require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    client = sdk.OpenShellClient(f"https://127.0.0.1:{port}", pki.ca_cert, pki.client_cert, pki.client_key)
    ns = type("GW", (), {})()
    ns.client, ns.port, ns.pki, ns.driver, ns.tmp, ns.store = client, port, pki, driver, tmp_path, store
    try:
        yield ns
    finally:
        client.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        store.close()


def supervisor_stub(gw, sandbox_id: str):
    creds = grpc.ssl_channel_credentials(gw.pki.ca_cert.read_bytes(), gw.pki.supervisor_key.read_bytes(), gw.pki.supervisor_cert.read_bytes())
    channel = grpc.secure_channel(f"127.0.0.1:{gw.port}", creds)
    md = (("x-sandbox-id", sandbox_id), ("x-sandbox-secret", gw.driver.created[sandbox_id]["secret"]))
    return channel, supervisor_pb2_grpc.SupervisorStub(channel), md


def test_create_get_list_never_return_values(gw):
    created = gw.client.create_provider("work", "anthropic", {"ANTHROPIC_API_KEY": SECRET})
    assert created.credential_keys == ("ANTHROPIC_API_KEY",)
    got = gw.client.get_provider("work")
    assert got.type == "anthropic" and got.credential_keys == ("ANTHROPIC_API_KEY",)
    raw = gw.client._stub.GetProvider(sdk.openshell_pb2.GetProviderRequest(name="work", workspace_scope=gw.client._scope))
    assert dict(raw.provider.credentials) == {"ANTHROPIC_API_KEY": "REDACTED"}
    assert [p.name for p in gw.client.list_providers()] == ["work"]
    assert SECRET not in repr(gw.client.list_providers())


def test_values_are_encrypted_at_rest_with_a_0600_key(gw):
    gw.client.create_provider("work", "anthropic", {"ANTHROPIC_API_KEY": SECRET})
    for name in os.listdir(gw.tmp):
        if name.startswith("gateway.db"):
            assert SECRET.encode() not in (gw.tmp / name).read_bytes()
    mode = stat.S_IMODE(os.stat(gw.tmp / KEY_FILE).st_mode)
    assert mode == 0o600


def test_bad_input_names_the_field(gw):
    with pytest.raises(sdk.InvalidRequest, match="unknown provider type 'nope'"):
        gw.client.create_provider("x", "nope", {"A": "1"})
    with pytest.raises(sdk.InvalidRequest, match="type 'anthropic' takes ANTHROPIC_API_KEY; use --type generic"):
        gw.client.create_provider("x", "anthropic", {"OTHER": "1"})
    with pytest.raises(sdk.InvalidRequest, match="at least one credential"):
        gw.client.create_provider("x", "generic", {})
    gw.client.create_provider("x", "generic", {"A": "1"})
    with pytest.raises(sdk.SandboxExists, match="provider 'x' already exists"):
        gw.client.create_provider("x", "generic", {"A": "1"})


def test_update_merges_and_delete_refuses_while_used(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "t1"})
    updated = gw.client.update_provider("gh", credentials={"GH_TOKEN": "t2"}, config={"hosts": "git.corp.test"})
    assert updated.credential_keys == ("GH_TOKEN", "GITHUB_TOKEN") and updated.config == {"hosts": "git.corp.test"}
    gw.client.create_sandbox("sb", providers=["gh"])
    with pytest.raises(sdk.ProviderInUse, match="used by sandbox.*sb"):
        gw.client.delete_provider("gh")
    gw.client.delete_sandbox("sb")
    assert gw.client.delete_provider("gh") == "COMPLETED"
    assert gw.client.delete_provider("gh", allow_missing=True) == "ALREADY_ABSENT"
    with pytest.raises(sdk.ProviderNotFound, match="provider 'gh' not found") as info:
        gw.client.get_provider("gh")
    assert isinstance(info.value, LookupError) and not isinstance(info.value, sdk.SandboxNotFound)


def test_sandbox_with_unknown_provider_is_refused(gw):
    with pytest.raises(sdk.InvalidRequest, match=r"spec.providers\[0\]: provider 'ghost' not found"):
        gw.client.create_sandbox("sb", providers=["ghost"])


def test_supervisor_gets_placeholders_and_values_for_its_own_sandbox_only(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "ghp_real"}, config={"hosts": "git.corp.test"})
    sb = gw.client.create_sandbox("sb", providers=["gh"])
    assert sb.id
    channel, stub, md = supervisor_stub(gw, sb.id)
    with channel:
        penv = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=(md[0], ("x-sandbox-secret", "0" * 64)), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(penv.environment) == {"GITHUB_TOKEN": "openshell:resolve:env:GITHUB_TOKEN"}
    (cred,) = penv.credentials
    assert cred.value == "ghp_real" and "api.github.com" in cred.hosts and "git.corp.test" in cred.hosts


def test_inference_route_set_get_and_bundle_refreshes_on_change(gw):
    assert gw.client.get_inference_route() is None
    with pytest.raises(sdk.InvalidRequest, match="inference backend 'nope' is not installed"):
        gw.client.set_inference_route("nope", "m")
    with pytest.raises(sdk.InvalidRequest, match="is not a valid URL"):
        gw.client.set_inference_route("openai", "m", base_url="http://[::1")  # was an uncaught ValueError
    gw.client.create_provider("oa", "openai", {"OPENAI_API_KEY": "k1"})
    route = gw.client.set_inference_route("openai", "gpt-x", base_url="http://127.0.0.1:9/v1", provider="oa")
    assert route.protocols == ("openai",) and route.revision == 1
    assert gw.client.get_inference_route().model == "gpt-x"
    sb = gw.client.create_sandbox("sb")
    channel, stub, md = supervisor_stub(gw, sb.id)
    with channel:
        stream = stub.WatchInferenceBundle(supervisor_pb2.WatchInferenceBundleRequest(), metadata=md, timeout=20)
        first = next(stream)
        assert (first.backend, first.model, first.base_url) == ("openai", "gpt-x", "http://127.0.0.1:9/v1")
        assert dict(first.auth_headers) == {"Authorization": "Bearer k1"}
        gw.client.update_provider("oa", credentials={"OPENAI_API_KEY": "k2"})
        second = next(stream)
        assert dict(second.auth_headers) == {"Authorization": "Bearer k2"} and second.revision != first.revision
        stream.cancel()
    with pytest.raises(sdk.ProviderInUse, match="authenticates the inference route"):
        gw.client.delete_provider("oa")


def test_bundle_watch_fires_when_an_attached_provider_changes(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "t1"})
    sb = gw.client.create_sandbox("sb", providers=["gh"])
    channel, stub, md = supervisor_stub(gw, sb.id)
    with channel:
        stream = stub.WatchInferenceBundle(supervisor_pb2.WatchInferenceBundleRequest(), metadata=md, timeout=20)
        first = next(stream)
        assert first.base_url == ""  # no route yet: the router answers 503
        gw.client.update_provider("gh", credentials={"GITHUB_TOKEN": "t2"})
        assert next(stream).revision != first.revision
        stream.cancel()


# --------------------------------------------------------------------------- updates, attach/detach

pb = sdk.openshell_pb2
dm = sdk.datamodel_pb2


def _update(gw, provider):
    return gw.client._stub.UpdateProvider(pb.UpdateProviderRequest(provider=provider, workspace_scope=gw.client._scope), timeout=10)


def test_update_cannot_change_the_type_and_empty_maps_keep_everything(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "t1"}, config={"hosts": "git.corp.test"})
    with pytest.raises(grpc.RpcError) as err:
        _update(gw, dm.Provider(metadata=dm.ObjectMeta(name="gh"), type="gitlab", credentials={"GITLAB_TOKEN": "x"}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type cannot be changed" in err.value.details()
    same = _update(gw, dm.Provider(metadata=dm.ObjectMeta(name="gh"), type="github")).provider
    assert same.type == "github" and dict(same.credentials) == {"GITHUB_TOKEN": "REDACTED"}
    assert dict(same.config) == {"hosts": "git.corp.test"}
    sb = gw.client.create_sandbox("sb", providers=["gh"])
    channel, stub, md = supervisor_stub(gw, sb.id)
    with channel:
        penv = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
    assert [c.value for c in penv.credentials] == ["t1"]


def _attach(gw, sandbox, provider, attach=True, **kw):
    if attach:
        req = pb.AttachSandboxProviderRequest(sandbox=sandbox, provider=provider, workspace_scope=gw.client._scope, **kw)
        return gw.client._stub.AttachSandboxProvider(req, timeout=30)
    req = pb.DetachSandboxProviderRequest(sandbox=sandbox, provider=provider, workspace_scope=gw.client._scope, **kw)
    return gw.client._stub.DetachSandboxProvider(req, timeout=30)


def test_attach_and_detach_change_the_supervisor_environment(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "ghp_real"})
    gw.client.create_provider("oa", "codex", {"CODEX_API_KEY": "sk-real"})
    sb = gw.client.create_sandbox("sb", providers=["gh"])
    channel, stub, md = supervisor_stub(gw, sb.id)
    with channel:
        before = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
        answer = _attach(gw, "sb", "oa")
        assert answer.attached and list(answer.sandbox.spec.providers) == ["gh", "oa"]
        assert _attach(gw, "sb", "oa").attached is False  # already attached: nothing changes
        after = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
        assert dict(after.environment) == {"GITHUB_TOKEN": "openshell:resolve:env:GITHUB_TOKEN", "CODEX_API_KEY": "openshell:resolve:env:CODEX_API_KEY"}
        assert after.revision != before.revision != 0
        listed = gw.client._stub.ListSandboxProviders(pb.ListSandboxProvidersRequest(sandbox="sb", workspace_scope=gw.client._scope), timeout=10)
        assert [(p.metadata.name, dict(p.credentials)) for p in listed.providers] == [
            ("gh", {"GITHUB_TOKEN": "REDACTED"}),
            ("oa", {"CODEX_API_KEY": "REDACTED"}),
        ]
        detached = _attach(gw, "sb", "gh", attach=False)
        assert detached.detached and list(detached.sandbox.spec.providers) == ["oa"]
        assert _attach(gw, "sb", "gh", attach=False).detached is False
        final = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
        assert dict(final.environment) == {"CODEX_API_KEY": "openshell:resolve:env:CODEX_API_KEY"}
    assert gw.client.delete_provider("gh") == "COMPLETED"  # no longer used


def test_attach_refuses_unknown_names_and_stale_versions(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "t"})
    gw.client.create_sandbox("sb")
    for sandbox, provider, code in (
        ("sb", "ghost", grpc.StatusCode.NOT_FOUND),
        ("nope", "gh", grpc.StatusCode.NOT_FOUND),
        ("sb", "", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as err:
            _attach(gw, sandbox, provider)
        assert err.value.code() == code, (sandbox, provider)
    with pytest.raises(grpc.RpcError) as err:
        _attach(gw, "sb", "gh", expected_resource_version=999)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    current = gw.client._stub.GetSandbox(pb.GetSandboxRequest(name="sb", workspace_scope=gw.client._scope), timeout=10).sandbox
    assert _attach(gw, "sb", "gh", expected_resource_version=current.metadata.resource_version).attached


def test_attach_to_a_ready_sandbox_returns_once_the_supervisor_applied_it(gw):
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "t"})
    sb = gw.client.create_sandbox("sb")
    gw.store.update_sandbox(sb.id, phase="READY")
    channel, stub, md = supervisor_stub(gw, sb.id)
    result: dict = {}
    with channel:
        worker = threading.Thread(target=lambda: result.setdefault("answer", _attach(gw, "sb", "gh")))
        worker.start()
        # What the supervisor does: the bundle watch fires, it re-reads and acknowledges.
        stream = stub.WatchInferenceBundle(supervisor_pb2.WatchInferenceBundleRequest(), metadata=md, timeout=20)
        next(stream)
        stream.cancel()
        penv = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
        assert dict(penv.environment) == {"GITHUB_TOKEN": "openshell:resolve:env:GITHUB_TOKEN"}
        assert worker.is_alive()  # waits for the acknowledgement
        stub.AckProviderEnvironment(supervisor_pb2.AckProviderEnvironmentRequest(revision=penv.revision), metadata=md, timeout=10)
        worker.join(20)
    assert result["answer"].attached


@contextlib.contextmanager
def _attach_waiting(gw):
    """A READY sandbox "sb" whose provider "gh" is being attached in a thread; yields once
    the attach is stored (the supervisor's bundle stream fired) and before any supervisor
    acknowledged it: ``(stub, metadata, bundle stream, worker thread, its result)``."""
    gw.client.create_provider("gh", "github", {"GITHUB_TOKEN": "t1"})
    sb = gw.client.create_sandbox("sb")
    gw.store.update_sandbox(sb.id, phase="READY")
    channel, stub, md = supervisor_stub(gw, sb.id)
    result: dict = {}

    def attach() -> None:
        try:
            result["answer"] = _attach(gw, "sb", "gh")
        except grpc.RpcError as exc:
            result["error"] = exc

    with channel:
        stream = stub.WatchInferenceBundle(supervisor_pb2.WatchInferenceBundleRequest(), metadata=md, timeout=20)
        worker = threading.Thread(target=attach)
        worker.start()
        next(stream)  # the attach is stored
        try:
            yield stub, md, stream, worker, result
        finally:
            stream.cancel()
            worker.join(20)


def test_attach_returns_when_the_supervisor_applied_a_credential_rotated_while_it_waited(gw):
    """The attach waits for the supervisor's acknowledgement. A rotation of the provider
    meanwhile makes the supervisor apply (and acknowledge) a newer environment than the
    one the attach began with; that one counts. Before, the call waited for its 15 s timeout."""
    with _attach_waiting(gw) as (stub, md, stream, worker, result):
        gw.client.update_provider("gh", credentials={"GITHUB_TOKEN": "t2"})
        next(stream)  # the rotation is stored too
        penv = stub.GetProviderEnvironment(supervisor_pb2.GetProviderEnvironmentRequest(), metadata=md, timeout=10)
        stub.AckProviderEnvironment(supervisor_pb2.AckProviderEnvironmentRequest(revision=penv.revision), metadata=md, timeout=10)
        worker.join(5)
        assert not worker.is_alive(), "the attach still waits for an environment that no longer exists"
    assert result["answer"].attached


def test_attach_to_a_sandbox_deleted_while_it_waits_says_not_found(gw):
    with _attach_waiting(gw) as (_stub, _md, _stream, worker, result):
        gw.client.delete_sandbox("sb")  # no supervisor will acknowledge the attach
        worker.join(5)
        assert not worker.is_alive(), "the attach waited for a deleted sandbox's supervisor"
    assert "error" in result and result["error"].code() == grpc.StatusCode.NOT_FOUND, result
    assert "sb" in result["error"].details()


def test_credentials_never_reach_the_stored_sandbox_spec(gw):
    gw.client.create_provider("cl", "claude-code", {"CLAUDE_CODE_OAUTH_TOKEN": SECRET})
    gw.client.create_sandbox("sb", providers=["cl"])
    _attach(gw, "sb", "cl", attach=False)
    _attach(gw, "sb", "cl")
    (record,) = gw.store.list_sandboxes()
    assert record.spec["providers"] == ["cl"] and SECRET not in repr(record.spec)
    for name in os.listdir(gw.tmp):
        if name.startswith("gateway.db"):
            assert SECRET.encode() not in (gw.tmp / name).read_bytes()
