"""The OpenShell and Supervisor gRPC services over a real grpc.aio server on a unix socket.

The compute driver is a fake (it records calls; no supervisor runs) and the
exec backend is replaced by a fake async iterator, so these tests check the
mapping between protos, core and status codes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from openshell._proto import (
    datamodel_pb2,
    openshell_pb2,
    openshell_pb2_grpc,
    sandbox_pb2,
    supervisor_pb2,
    supervisor_pb2_grpc,
)
from openshell.gateway import core as gc
from openshell.gateway import sandbox_exec
from openshell.gateway.service import add_services
from openshell.gateway.store import Store
from openshell.gateway.supervisor_service import MAX_LOG_BATCH
from openshell.plugin.kinds import (
    DriverContext,
    SandboxStatus,
    SshEndpoint,
)
from openshell.plugin.testing import RecordingDriver

pytestmark = pytest.mark.timeout(60)

DEFAULT = datamodel_pb2.WorkspaceSelector(workspace="default")


class WireServer:
    """A grpc.aio server with our services, on its own event loop thread."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sock = tmp / "grpc.sock"
        self.driver = RecordingDriver(DriverContext(state_dir=str(tmp), gateway_endpoint="https://127.0.0.1:1"))
        self.store = Store(tmp / "gateway.db")
        self.core = gc.GatewayCore(tmp, self.store, self.driver, version="9.9.9", monitor_interval=0)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = self.run(self._start())
        self.channel = grpc.insecure_channel(f"unix:{self.sock}")
        self.stub = openshell_pb2_grpc.OpenShellStub(self.channel)
        self.sup = supervisor_pb2_grpc.SupervisorStub(self.channel)

    async def _start(self) -> grpc.aio.Server:
        server = grpc.aio.server()
        add_services(server, self.core)
        server.add_insecure_port(f"unix:{self.sock}")
        await server.start()
        return server

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.channel.close()
        self.run(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.store.close()

    # helpers
    def create(self, name: str = "", labels: Mapping[str, str] | None = None, **spec: Any) -> openshell_pb2.Sandbox:
        req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name=name, labels=dict(labels or {}), spec=openshell_pb2.SandboxSpec(**spec))
        return self.stub.CreateSandbox(req, timeout=10).sandbox

    def meta(self, sandbox_id: str, secret: str | None = None) -> tuple[tuple[str, str], ...]:
        secret = self.driver.created[sandbox_id]["secret"] if secret is None else secret
        return (("x-sandbox-id", sandbox_id), ("x-sandbox-secret", secret))

    def make_ready(self, sandbox: openshell_pb2.Sandbox) -> None:
        self.sup.ReportStatus(
            supervisor_pb2.ReportStatusRequest(phase=openshell_pb2.SANDBOX_PHASE_READY, supervisor_pid=1234),
            metadata=self.meta(sandbox.metadata.id),
            timeout=10,
        )


@pytest.fixture
def wire_server(tmp_path):
    srv = WireServer(tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# --------------------------------------------------------------------------- health / create / get


def test_health_reports_healthy_and_version(wire_server):
    resp = wire_server.stub.Health(openshell_pb2.HealthRequest(), timeout=10)
    assert resp.status == openshell_pb2.SERVICE_STATUS_HEALTHY and resp.version == "9.9.9"


def test_create_starts_driver_with_record_secret_netns_and_policy(wire_server):
    sb = wire_server.create("demo", {"team": "a"}, command=["sleep", "9"], extra_hosts=["api.test:10.199.0.2"])
    assert sb.metadata.name == "demo" and sb.metadata.workspace == "default" and sb.metadata.id
    assert sb.status.phase == openshell_pb2.SANDBOX_PHASE_PROVISIONING
    assert dict(sb.metadata.labels) == {"team": "a"}
    sent = wire_server.driver.created[sb.metadata.id]
    assert sent["name"] == "demo" and sent["netns_index"] == 1 and len(sent["secret"]) == 64
    assert sent["spec"]["command"] == ["sleep", "9"] and sent["spec"]["extra_hosts"] == ["api.test:10.199.0.2"]
    assert sent["policy_yaml"] == gc.DEFAULT_POLICY_YAML
    # The secret never reaches clients.
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10)
    assert sent["secret"].encode() not in got.SerializeToString()


def test_the_driver_that_made_a_sandbox_is_stored_and_reported(wire_server):
    sb = wire_server.create("drv")
    assert sb.status.compute_driver == "recording"
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="drv", workspace_scope=DEFAULT), timeout=10).sandbox
    listed = wire_server.stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT), timeout=10).sandboxes
    assert got.status.compute_driver == "recording" and [s.status.compute_driver for s in listed if s.metadata.name == "drv"] == ["recording"]
    assert wire_server.store.get_sandbox(sb.metadata.id).driver == "recording"
    # Ours, above the SDK's numbers: the SDK's parser skips it (docs/sdk-compat.md).
    assert openshell_pb2.SandboxStatus.DESCRIPTOR.fields_by_name["compute_driver"].number >= 1000


def test_sandbox_event_hooks_get_a_frozen_event_without_the_secret(wire_server):
    import dataclasses

    from openshell.plugin import SandboxEvent, hookimpl
    from openshell.plugin.testing import registered

    seen: list[tuple[str, SandboxEvent]] = []

    class Listener:
        @hookimpl
        def sandbox_created(self, sandbox):
            seen.append(("created", sandbox))

        @hookimpl
        def sandbox_deleted(self, sandbox):
            seen.append(("deleted", sandbox))

    with registered(Listener()):
        sb = wire_server.create("evt", {"team": "a"}, command=["sleep", "9"], environment={"TOKEN": "s3cr3t-value"})
        wire_server.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="evt", workspace_scope=DEFAULT), timeout=10)
    assert [what for what, _ in seen] == ["created", "deleted"]
    created = seen[0][1]
    assert isinstance(created, SandboxEvent)
    assert (created.id, created.name, created.workspace, dict(created.labels)) == (sb.metadata.id, "evt", "default", {"team": "a"})
    assert created.phase == "PROVISIONING" and created.created_at > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        created.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        created.labels["team"] = "b"  # type: ignore[index]
    secret = wire_server.driver.created[sb.metadata.id]["secret"]
    for _, event in seen:
        assert secret not in repr(event) and "s3cr3t-value" not in repr(event)
        assert not hasattr(event, "secret") and not hasattr(event, "spec")


def test_create_without_name_gets_two_word_name(wire_server):
    sb = wire_server.create()
    first, second = sb.metadata.name.split("-")
    assert first and second


def test_create_with_taken_name_is_already_exists(wire_server):
    wire_server.create("demo")
    err = code_of(lambda: wire_server.create("demo"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "'demo' already exists" in err.details()


def test_create_with_invalid_policy_names_the_field(wire_server):
    bad = "version: 1\nnetwork_policies:\n  web:\n    endpoints:\n      - host: a.test\n        port: 443\n"
    err = code_of(lambda: wire_server.create("demo", policy_yaml=bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.policy_yaml.network_policies.web" in err.details()
    assert wire_server.driver.created == {}


def test_create_stores_given_policy_as_revision_one(wire_server):
    policy = "version: 1\nnetwork_policies: {}\n"
    sb = wire_server.create("demo", policy_yaml=policy)
    assert wire_server.driver.created[sb.metadata.id]["policy_yaml"] == policy
    cfg = wire_server.sup.GetSandboxConfig(supervisor_pb2.GetSandboxConfigRequest(), metadata=wire_server.meta(sb.metadata.id), timeout=10)
    assert (cfg.policy.revision, cfg.policy.policy_yaml) == (1, policy)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "ok", "extra_hosts": ["nocolon"]}, "spec.extra_hosts[0]"),
        ({"name": "ok", "environment": {"1BAD": "x"}}, "spec.environment.1BAD"),
    ],
)
def test_create_invalid_argument_names_the_field(wire_server, kwargs, field):
    name = kwargs.pop("name")
    err = code_of(lambda: wire_server.create(name, **kwargs))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field + ":")


def test_create_takes_the_sdk_structured_policy_and_get_returns_it(wire_server):
    policy = sandbox_pb2.SandboxPolicy(
        version=1,
        process=sandbox_pb2.ProcessPolicy(run_as_user="1234"),
        network_policies={
            "api": sandbox_pb2.NetworkPolicyRule(
                endpoints=[sandbox_pb2.NetworkEndpoint(host="API.example.test", port=443)], binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")]
            )
        },
    )
    req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name="demo", spec=openshell_pb2.SandboxSpec(policy=policy))
    created = wire_server.stub.CreateSandbox(req, timeout=10).sandbox
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10).sandbox
    assert got.spec.policy == created.spec.policy
    assert got.spec.policy.process.run_as_user == "1234"
    assert got.spec.policy.network_policies["api"].endpoints[0].host == "api.example.test"
    assert "/sandbox" in got.spec.policy.filesystem.read_write  # the default filesystem was added


def test_create_refuses_an_sdk_policy_field_we_do_not_support(wire_server):
    # Field 6 of SandboxPolicy is the SDK's network_middlewares (unknown to us).
    spec = openshell_pb2.SandboxSpec(policy=sandbox_pb2.SandboxPolicy.FromString(bytes([6 << 3 | 2, 0])))
    req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name="demo", spec=spec)
    err = code_of(lambda: wire_server.stub.CreateSandbox(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("spec.policy.network_middlewares:")


def test_resource_limits_reach_the_driver_and_come_back_in_get(wire_server):
    spec = openshell_pb2.SandboxSpec()
    spec.template.resources.update({"limits": {"cpu": "1.5", "memory": "512Mi"}, "requests": {"cpu": "1"}})
    req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name="lim", spec=spec)
    sb = wire_server.stub.CreateSandbox(req, timeout=10).sandbox
    assert wire_server.driver.created[sb.metadata.id]["spec"]["resources"] == {"limits": {"cpu": "1.5", "memory": "512Mi"}}
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="lim", workspace_scope=DEFAULT), timeout=10).sandbox
    assert dict(got.spec.template.resources["limits"]) == {"cpu": "1.5", "memory": "512Mi"}


@pytest.mark.parametrize(
    ("resources", "detail"),
    [
        ({"limits": {"memory": "lots"}}, "spec.template.resources: resources.limits.memory: memory 'lots' is not a size"),
        ({"limits": {"gpu": "1"}}, "spec.template.resources: resources.limits.gpu: unknown resource"),
        ({"limits": {"cpu": "0"}}, "spec.template.resources: resources.limits.cpu"),
    ],
)
def test_bad_resource_limits_are_invalid_argument(wire_server, resources, detail):
    spec = openshell_pb2.SandboxSpec()
    spec.template.resources.update(resources)
    req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name="lim", spec=spec)
    err = code_of(lambda: wire_server.stub.CreateSandbox(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(detail)


def test_template_fields_other_than_image_and_resources_are_refused(wire_server):
    # SandboxTemplate.runtime_class_name (field 2) of the SDK's schema: not implemented, so refused.
    spec = openshell_pb2.SandboxSpec.FromString(bytes([6 << 3 | 2, 4, 2 << 3 | 2, 2]) + b"rc")
    req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name="rc", spec=spec)
    err = code_of(lambda: wire_server.stub.CreateSandbox(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("spec.template.runtime_class_name:")


def test_image_on_a_driver_without_images_is_refused_naming_the_driver(wire_server):
    spec = openshell_pb2.SandboxSpec(template=openshell_pb2.SandboxTemplate(image="python:3.12"))
    req = openshell_pb2.CreateSandboxRequest(workspace_scope=DEFAULT, name="img", spec=spec)
    err = code_of(lambda: wire_server.stub.CreateSandbox(req, timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "image 'python:3.12'" in err.details() and "compute driver 'recording' has no images" in err.details()
    assert wire_server.driver.created == {}


def test_image_reaches_a_driver_with_images_and_comes_back_in_get(wire_server, monkeypatch):
    monkeypatch.setattr(type(wire_server.driver), "supports_images", True)
    sb = wire_server.create("img", template=openshell_pb2.SandboxTemplate(image="python:3.12"))
    assert wire_server.driver.created[sb.metadata.id]["spec"]["image"] == "python:3.12"
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="img", workspace_scope=DEFAULT), timeout=10).sandbox
    assert got.spec.template.image == "python:3.12" and not got.HasField("created_from_workload_template")
    bad = openshell_pb2.CreateSandboxRequest(
        workspace_scope=DEFAULT, name="bad", spec=openshell_pb2.SandboxSpec(template=openshell_pb2.SandboxTemplate(image="a b"))
    )
    err = code_of(lambda: wire_server.stub.CreateSandbox(bad, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("spec.template.image:")


def test_unknown_workspace_is_not_found(wire_server):
    req = openshell_pb2.GetSandboxRequest(name="x", workspace_scope=datamodel_pb2.WorkspaceSelector(workspace="nope"))
    err = code_of(lambda: wire_server.stub.GetSandbox(req, timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "workspace 'nope'" in err.details()


def test_driver_failure_keeps_sandbox_in_error_with_reason(wire_server):
    wire_server.driver.fail_create = True
    sb = wire_server.create("demo")
    assert sb.status.phase == openshell_pb2.SANDBOX_PHASE_ERROR
    assert "no room" in sb.status.conditions[0].message


# --------------------------------------------------------------------------- list


def test_list_filters_by_label_selector(wire_server):
    wire_server.create("a", {"team": "x", "tier": "1"})
    wire_server.create("b", {"team": "y"})
    wire_server.create("c", {"team": "x"})

    def names(selector: str) -> list[str]:
        resp = wire_server.stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT, label_selector=selector), timeout=10)
        assert resp.next_page_token == ""
        return [s.metadata.name for s in resp.sandboxes]

    assert names("") == ["a", "b", "c"]
    assert names("team=x") == ["a", "c"]
    assert names("team=x,tier") == ["a"]
    assert names("team!=x") == ["b"]
    assert names("!tier") == ["b", "c"]


def test_list_pages_end_with_empty_token_and_never_repeat(wire_server):
    for i in range(7):
        wire_server.create(f"s{i}")
    seen, tokens, token = [], set(), ""
    while True:
        resp = wire_server.stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT, page_size=3, page_token=token), timeout=10)
        seen += [s.metadata.name for s in resp.sandboxes]
        token = resp.next_page_token
        if not token:
            break
        assert token not in tokens
        tokens.add(token)
    assert seen == [f"s{i}" for i in range(7)]
    assert len(tokens) == 2


def test_list_with_bad_selector_or_token_is_invalid_argument(wire_server):
    for req, field in (
        (openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT, label_selector="a=b=c"), "label_selector"),
        (openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT, page_token="garbage!"), "page_token"),
    ):
        err = code_of(lambda req=req: wire_server.stub.ListSandboxes(req, timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field)


def test_list_all_workspaces(wire_server):
    wire_server.create("a")
    req = openshell_pb2.ListSandboxesRequest(workspace_scope=datamodel_pb2.WorkspaceSelector(all_workspaces=datamodel_pb2.AllWorkspaces()))
    assert [s.metadata.name for s in wire_server.stub.ListSandboxes(req, timeout=10).sandboxes] == ["a"]


def test_default_workspace_exists(wire_server):
    ws = wire_server.stub.GetWorkspace(openshell_pb2.GetWorkspaceRequest(name="default"), timeout=10).workspace
    assert ws.metadata.name == "default" and ws.status.phase == datamodel_pb2.WORKSPACE_PHASE_ACTIVE
    listed = wire_server.stub.ListWorkspaces(openshell_pb2.ListWorkspacesRequest(), timeout=10)
    assert [w.metadata.name for w in listed.workspaces] == ["default"] and listed.next_page_token == ""


# --------------------------------------------------------------------------- delete


def test_delete_completes_then_sandbox_is_not_found(wire_server):
    sb = wire_server.create("demo")
    resp = wire_server.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10)
    assert resp.outcome == openshell_pb2.DELETION_OUTCOME_COMPLETED and resp.sandbox_id == sb.metadata.id
    assert wire_server.driver.deleted == [sb.metadata.id]
    err = code_of(lambda: wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "sandbox 'demo' not found" in err.details() and "openshell sandbox list" in err.details()


def test_delete_passes_keep_workdir_to_driver(wire_server):
    sb = wire_server.create("demo")
    req = openshell_pb2.DeleteSandboxRequest(name="demo", workspace_scope=DEFAULT, keep_workdir=True)
    assert wire_server.stub.DeleteSandbox(req, timeout=10).outcome == openshell_pb2.DELETION_OUTCOME_COMPLETED
    assert wire_server.driver.kept_workdirs == [sb.metadata.id]


def test_delete_missing_is_not_found_or_already_absent(wire_server):
    req = openshell_pb2.DeleteSandboxRequest(name="ghost", workspace_scope=DEFAULT)
    assert code_of(lambda: wire_server.stub.DeleteSandbox(req, timeout=10)).code() == grpc.StatusCode.NOT_FOUND
    req.allow_missing = True
    resp = wire_server.stub.DeleteSandbox(req, timeout=10)
    assert resp.outcome == openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT and resp.outcome != 0


def test_delete_frees_name_and_netns_index(wire_server):
    first = wire_server.create("demo")
    wire_server.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10)
    again = wire_server.create("demo")
    assert again.metadata.id != first.metadata.id
    assert wire_server.driver.created[again.metadata.id]["netns_index"] == 1


# --------------------------------------------------------------------------- exec


def _fake_exec(events, calls):
    async def fake(endpoint, secret, argv, *, env=None, workdir=None, stdin=None, timeout=None, tty=False):
        calls.append({"endpoint": endpoint, "secret": secret, "argv": argv, "env": env, "workdir": workdir, "stdin": stdin, "timeout": timeout})
        for ev in events:
            if ev == "hang":
                await asyncio.sleep(3600)
            yield ev

    return fake


def _exec(wire_server, **kwargs) -> list[openshell_pb2.ExecSandboxEvent]:
    req = openshell_pb2.ExecSandboxRequest(workspace_scope=DEFAULT, sandbox="demo", command=["echo", "hello"], **kwargs)
    return list(wire_server.stub.ExecSandbox(req, timeout=30))


def test_exec_maps_stream_and_ends_with_exactly_one_exit(wire_server, monkeypatch):
    sb = wire_server.create("demo")
    wire_server.make_ready(sb)
    calls: list[dict] = []
    E = sandbox_exec.ExecEvent
    monkeypatch.setattr(
        sandbox_exec,
        "exec_in_sandbox",
        _fake_exec([E("stdout", b"hel"), E("stderr", b"warn"), E("stdout", b"lo\n"), E("exit", exit_code=3), E("stdout", b"late")], calls),
    )
    events = _exec(wire_server, environment={"A": "1"}, workdir="/sandbox", stdin=b"in")
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds == ["stdout", "stderr", "stdout", "exit"]
    assert b"".join(e.stdout.data for e in events if e.HasField("stdout")) == b"hello\n"
    assert events[-1].exit.exit_code == 3
    call = calls[0]
    assert call["argv"] == ["echo", "hello"] and call["env"] == {"A": "1"} and call["workdir"] == "/sandbox"
    assert call["stdin"] == b"in" and call["timeout"] is None
    assert call["secret"] == bytes.fromhex(wire_server.driver.created[sb.metadata.id]["secret"])
    assert call["endpoint"] == SshEndpoint(unix_path=f"/nonexistent/{sb.metadata.id}.sock")


def test_exec_backend_without_exit_still_sends_one_exit(wire_server, monkeypatch):
    wire_server.make_ready(wire_server.create("demo"))
    monkeypatch.setattr(sandbox_exec, "exec_in_sandbox", _fake_exec([sandbox_exec.ExecEvent("stdout", b"x")], []))
    events = _exec(wire_server)
    assert [e.WhichOneof("payload") for e in events] == ["stdout", "exit"]
    assert events[-1].exit.exit_code == 255


def test_exec_timeout_ends_with_exit_124(wire_server, monkeypatch):
    wire_server.make_ready(wire_server.create("demo"))
    monkeypatch.setattr(gc, "EXEC_TIMEOUT_GRACE", 0.2)
    calls: list[dict] = []
    monkeypatch.setattr(sandbox_exec, "exec_in_sandbox", _fake_exec([sandbox_exec.ExecEvent("stdout", b"start"), "hang"], calls))
    events = _exec(wire_server, execution_timeout=Duration(seconds=1))
    assert [e.WhichOneof("payload") for e in events] == ["stdout", "exit"]
    assert events[-1].exit.exit_code == 124
    assert calls[0]["timeout"] == 1.0


def test_exec_on_sandbox_not_ready_is_failed_precondition(wire_server):
    wire_server.create("demo")
    err = code_of(lambda: _exec(wire_server))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "PROVISIONING" in err.details()


def test_exec_on_missing_sandbox_is_not_found(wire_server):
    assert code_of(lambda: _exec(wire_server)).code() == grpc.StatusCode.NOT_FOUND


def test_exec_unreachable_sandbox_is_unavailable(wire_server, monkeypatch):
    wire_server.make_ready(wire_server.create("demo"))

    async def unreachable(*args, **kwargs):
        raise sandbox_exec.SandboxUnreachable("ssh socket missing")
        yield  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(sandbox_exec, "exec_in_sandbox", unreachable)
    err = code_of(lambda: _exec(wire_server))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "ssh socket missing" in err.details()


# --------------------------------------------------------------------------- supervisor service


def test_supervisor_rpcs_refuse_wrong_or_missing_secret(wire_server):
    sb = wire_server.create("demo")
    wrong = wire_server.meta(sb.metadata.id, secret="00" * 32)
    for call in (
        lambda md: wire_server.sup.GetSandboxConfig(supervisor_pb2.GetSandboxConfigRequest(), metadata=md, timeout=10),
        lambda md: wire_server.sup.ReportStatus(supervisor_pb2.ReportStatusRequest(phase=openshell_pb2.SANDBOX_PHASE_READY), metadata=md, timeout=10),
        lambda md: list(wire_server.sup.WatchPolicy(supervisor_pb2.WatchPolicyRequest(), metadata=md, timeout=10)),
    ):
        for md in (wrong, (), (("x-sandbox-id", "not-an-id"), ("x-sandbox-secret", "x"))):
            assert code_of(lambda call=call, md=md: call(md)).code() == grpc.StatusCode.UNAUTHENTICATED
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10)
    assert got.sandbox.status.phase == openshell_pb2.SANDBOX_PHASE_PROVISIONING


def test_supervisor_config_has_spec_hosts_env_and_netns(wire_server):
    sb = wire_server.create("demo", {"k": "v"}, command=["sh"], environment={"A": "1"}, extra_hosts=["h.test:10.199.0.9"])
    cfg = wire_server.sup.GetSandboxConfig(supervisor_pb2.GetSandboxConfigRequest(), metadata=wire_server.meta(sb.metadata.id), timeout=10)
    assert (cfg.sandbox_id, cfg.name, cfg.workspace, cfg.netns_index) == (sb.metadata.id, "demo", "default", 1)
    assert list(cfg.command) == ["sh"] and dict(cfg.environment) == {"A": "1"} and list(cfg.extra_hosts) == ["h.test:10.199.0.9"]
    assert dict(cfg.labels) == {"k": "v"} and cfg.policy.revision == 1


def test_report_ready_then_error_with_reason(wire_server):
    sb = wire_server.create("demo")
    wire_server.make_ready(sb)

    def get():
        return wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10).sandbox

    assert get().status.phase == openshell_pb2.SANDBOX_PHASE_READY
    assert wire_server.store.get_sandbox(sb.metadata.id).supervisor_pid == 1234
    wire_server.sup.ReportStatus(
        supervisor_pb2.ReportStatusRequest(phase=openshell_pb2.SANDBOX_PHASE_ERROR, reason="landlock unavailable"),
        metadata=wire_server.meta(sb.metadata.id),
        timeout=10,
    )
    now = get()
    assert now.status.phase == openshell_pb2.SANDBOX_PHASE_ERROR
    assert now.status.conditions[0].message == "landlock unavailable"


def test_report_other_phase_is_invalid_argument(wire_server):
    sb = wire_server.create("demo")
    req = supervisor_pb2.ReportStatusRequest(phase=openshell_pb2.SANDBOX_PHASE_STOPPING)
    err = code_of(lambda: wire_server.sup.ReportStatus(req, metadata=wire_server.meta(sb.metadata.id), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("phase")


def test_policy_reports_set_revision_status_and_current_version(wire_server):
    sb = wire_server.create("demo")
    md = wire_server.meta(sb.metadata.id)
    wire_server.sup.ReportStatus(
        supervisor_pb2.ReportStatusRequest(policy=supervisor_pb2.PolicyReport(revision=1, status=supervisor_pb2.POLICY_LOAD_STATUS_LOADED)),
        metadata=md,
        timeout=10,
    )
    got = wire_server.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10).sandbox
    assert got.status.current_policy_version == 1
    rev2 = wire_server.run(wire_server.core.set_policy("demo", "version: 1\n"))
    wire_server.sup.ReportStatus(
        supervisor_pb2.ReportStatusRequest(
            policy=supervisor_pb2.PolicyReport(revision=rev2.revision, status=supervisor_pb2.POLICY_LOAD_STATUS_FAILED, error="engine said no")
        ),
        metadata=md,
        timeout=10,
    )
    revs = wire_server.store.list_policy_revisions(sb.metadata.id)
    assert [(r.revision, r.status, r.error) for r in revs] == [(1, "loaded", ""), (2, "failed", "engine said no")]


def test_watch_policy_streams_current_and_new_revisions_and_ends_on_delete(wire_server):
    sb = wire_server.create("demo")
    stream = wire_server.sup.WatchPolicy(supervisor_pb2.WatchPolicyRequest(after_revision=0), metadata=wire_server.meta(sb.metadata.id), timeout=20)
    assert next(stream).revision == 1
    wire_server.run(wire_server.core.set_policy("demo", "version: 1\nnetwork_policies: {}\n"))
    second = next(stream)
    assert second.revision == 2 and "network_policies" in second.policy_yaml
    wire_server.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="demo", workspace_scope=DEFAULT), timeout=10)
    assert list(stream) == []


def test_a_change_to_one_sandbox_wakes_only_its_own_watch_streams(wire_server, monkeypatch):
    """Every supervisor holds a WatchPolicy and a WatchInferenceBundle stream. A new
    policy revision, a delete or a provider acknowledgement of one sandbox must not
    make the streams of the others re-read the store: with hundreds running, that
    was ~1,000 store reads per create or delete, on the loop that answers the next start."""
    route = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}
    wire_server.run(wire_server.core.providers.set_route("default", model="m1", **route))
    sandboxes = [wire_server.create(f"w{i}") for i in range(12)]
    streams = {}
    for sb in sandboxes:
        md = wire_server.meta(sb.metadata.id)
        policy = wire_server.sup.WatchPolicy(supervisor_pb2.WatchPolicyRequest(after_revision=0), metadata=md, timeout=30)
        bundle = wire_server.sup.WatchInferenceBundle(supervisor_pb2.WatchInferenceBundleRequest(), metadata=md, timeout=30)
        assert next(policy).revision == 1
        assert next(bundle).model == "m1"
        streams[sb.metadata.id] = (policy, bundle)
    time.sleep(0.5)  # each stream reads once more after its first message, then waits
    reads: list[str] = []
    for method in ("list_policy_revisions", "get_sandbox"):
        real = getattr(wire_server.store, method)
        monkeypatch.setattr(wire_server.store, method, lambda sandbox_id, *a, _real=real, **k: (reads.append(sandbox_id), _real(sandbox_id, *a, **k))[1])
    first, second, third = (sb.metadata.id for sb in sandboxes[:3])

    wire_server.run(wire_server.core.set_policy("w0", "version: 1\nnetwork_policies: {}\n"))
    assert next(streams[first][0]).revision == 2
    wire_server.run(wire_server.core.providers.acknowledge(third, 7))
    wire_server.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="w1", workspace_scope=DEFAULT), timeout=10)
    assert list(streams[second][0]) == [] and list(streams[second][1]) == []
    time.sleep(0.5)  # a stream woken by mistake would re-read within this
    assert reads and set(reads) <= {first, second, third}, f"streams of other sandboxes re-read the store: {sorted(set(reads) - {first, second, third})}"

    # A change that may concern every sandbox (an inference route) still reaches all of them.
    wire_server.run(wire_server.core.providers.set_route("default", model="m2", **route))
    for sb in sandboxes[2:]:
        assert next(streams[sb.metadata.id][1]).model == "m2"
    for policy, bundle in streams.values():
        policy.cancel()
        bundle.cancel()


def test_push_logs_appends_records(wire_server):
    sb = wire_server.create("demo")
    records = [supervisor_pb2.LogRecord(level="info", target="openshell.supervisor", message=f"m{i}", fields={"i": str(i)}) for i in range(3)]
    resp = wire_server.sup.PushLogs(iter(records), metadata=wire_server.meta(sb.metadata.id), timeout=10)
    assert resp.accepted == 3
    logs = wire_server.run(wire_server.core.read_logs("demo", tail=2))
    assert [r["message"] for r in logs] == ["m1", "m2"]


def test_push_log_batch_appends_records_and_parses_their_fields(wire_server):
    sb = wire_server.create("demo")
    batch = supervisor_pb2.LogBatch()
    batch.records.add(level="warning", target="openshell.supervisor.proxy", message='event=decision decision=DENIED host=api.test reason="not in any policy"')
    batch.records.add(level="info", target="openshell.supervisor", message="event=ready", fields={"event": "kept"})
    resp = wire_server.sup.PushLogBatch(batch, metadata=wire_server.meta(sb.metadata.id), timeout=10)
    assert resp.accepted == 2
    first, second = wire_server.run(wire_server.core.read_logs("demo"))
    assert first["fields"] == {"event": "decision", "decision": "DENIED", "host": "api.test", "reason": "not in any policy"}
    assert second["fields"] == {"event": "kept"}  # fields a supervisor sent are kept as they are


def test_push_log_batch_refuses_an_oversized_batch_and_an_unknown_sandbox(wire_server):
    sb = wire_server.create("demo")
    batch = supervisor_pb2.LogBatch()
    for _ in range(MAX_LOG_BATCH + 1):
        batch.records.add(level="info", target="t", message="x")
    with pytest.raises(grpc.RpcError) as err:
        wire_server.sup.PushLogBatch(batch, metadata=wire_server.meta(sb.metadata.id), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wire_server.run(wire_server.core.read_logs("demo")) == []


# --------------------------------------------------------------------------- restart / reconcile


def test_restart_keeps_records_and_marks_dead_supervisors_error(tmp_path):
    first = WireServer(tmp_path)
    alive = first.create("alive")
    dead = first.create("dead")
    first.make_ready(alive)
    first.make_ready(dead)
    first.close()

    second = WireServer(tmp_path)
    try:
        second.driver.statuses[dead.metadata.id] = SandboxStatus("ERROR", "supervisor (pid 7) exited")
        second.run(second.core.reconcile())
        listed = second.stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=DEFAULT), timeout=10).sandboxes
        by_name = {s.metadata.name: s for s in listed}
        assert set(by_name) == {"alive", "dead"}
        assert by_name["alive"].status.phase == openshell_pb2.SANDBOX_PHASE_READY
        assert by_name["dead"].status.phase == openshell_pb2.SANDBOX_PHASE_ERROR
        assert "supervisor (pid 7) exited" in by_name["dead"].status.conditions[0].message
    finally:
        second.close()


def test_unimplemented_sdk_rpc_answers_unimplemented(wire_server):
    # ExposeService exists in the SDK's service but not in ours.
    expose = wire_server.channel.unary_unary("/openshell.v1.OpenShell/ExposeService", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    assert code_of(lambda: expose(b"", timeout=10)).code() == grpc.StatusCode.UNIMPLEMENTED


def test_supervisor_config_carries_a_fresh_sandbox_ca_and_the_policy_as_json(wire_server):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from openshell.policy import parse_policy

    policy = "version: 1\nnetwork_policies:\n  gh:\n    endpoints: [{host: api.github.com, port: 443}]\n    binaries: [{path: /usr/bin/curl}]\n"
    sb = wire_server.create("ca-json", policy_yaml=policy)
    get = lambda: wire_server.sup.GetSandboxConfig(supervisor_pb2.GetSandboxConfigRequest(), metadata=wire_server.meta(sb.metadata.id), timeout=10)  # noqa: E731
    first, second = get(), get()
    cert = x509.load_pem_x509_certificate(first.sandbox_ca_cert_pem)
    key = serialization.load_pem_private_key(first.sandbox_ca_key_pem, password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert "ca-json" in cert.subject.rfc4514_string()
    assert x509.BasicConstraints(ca=True, path_length=0) == cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    # made anew for each start: a restarted supervisor never gets the last one's key
    assert second.sandbox_ca_key_pem != first.sandbox_ca_key_pem
    # the JSON form validates to the same policy as the YAML
    assert parse_policy(json.loads(first.policy.policy_json)) == parse_policy(first.policy.policy_yaml)


def test_policy_json_is_empty_when_json_cannot_carry_the_document_exactly():
    from openshell.gateway.supervisor_service import policy_json

    assert json.loads(policy_json("version: 1\n")) == {"version": 1}
    assert policy_json("version: 1\nnetwork_policies:\n  1: {}\n") == ""  # an int key would become "1"
    assert policy_json("") == ""  # the default policy: the supervisor parses the (empty) YAML
