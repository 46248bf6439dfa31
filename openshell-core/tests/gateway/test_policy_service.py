"""Policy revisions over the wire: UpdateConfig, GetSandboxPolicyStatus, ListSandboxPolicies (POLICY.md §6).

A real grpc.aio server and SQLite store (``WireServer`` of test_service.py);
the compute driver is a fake, and the supervisor's side is played by calling
the real Supervisor service (ReportStatus, WatchPolicy) with the sandbox's secret.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from openshell._proto import openshell_pb2, sandbox_pb2, supervisor_pb2
from openshell.gateway.policies import MAX_POLICY_BYTES, policy_hash
from openshell.policy import parse_policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_service import DEFAULT, WireServer  # noqa: E402

pytestmark = pytest.mark.timeout(60)

CREATED = """\
version: 1
filesystem_policy: {include_workdir: true, read_only: [/usr, /etc], read_write: [/tmp]}
landlock: {compatibility: hard_requirement}
process: {run_as_user: sandbox, run_as_group: sandbox}
"""
NETWORK_ONLY = """\
version: 1
network_policies:
  api: {endpoints: [{host: api.example.test, port: 443}], binaries: [{path: /usr/bin/curl}]}
"""


@pytest.fixture
def wire(tmp_path):
    server = WireServer(tmp_path)
    yield server
    server.close()


@pytest.fixture
def sandbox(wire):
    return wire.create("pol", policy_yaml=CREATED)


def update(wire, yaml: str, name: str = "pol") -> openshell_pb2.UpdateConfigResponse:
    return wire.stub.UpdateConfig(openshell_pb2.UpdateConfigRequest(sandbox=name, workspace_scope=DEFAULT, policy_yaml=yaml), timeout=10)


def status(wire, version: int = 0, name: str = "pol") -> openshell_pb2.GetSandboxPolicyStatusResponse:
    req = openshell_pb2.GetSandboxPolicyStatusRequest(sandbox=name, version=version, workspace_scope=DEFAULT)
    return wire.stub.GetSandboxPolicyStatus(req, timeout=10)


def listing(wire, page_size: int = 0, token: str = "") -> openshell_pb2.ListSandboxPoliciesResponse:
    req = openshell_pb2.ListSandboxPoliciesRequest(sandbox="pol", workspace_scope=DEFAULT, page_size=page_size, page_token=token)
    return wire.stub.ListSandboxPolicies(req, timeout=10)


def report(wire, sandbox, revision: int, error: str = "") -> None:
    st = supervisor_pb2.POLICY_LOAD_STATUS_FAILED if error else supervisor_pb2.POLICY_LOAD_STATUS_LOADED
    req = supervisor_pb2.ReportStatusRequest(policy=supervisor_pb2.PolicyReport(revision=revision, status=st, error=error))
    wire.sup.ReportStatus(req, metadata=wire.meta(sandbox.metadata.id), timeout=10)


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_update_stores_the_next_revision_pending_with_its_hash(wire, sandbox):
    resp = update(wire, NETWORK_ONLY)
    assert resp.version == 2
    got = status(wire, 2).revision
    assert got.status == openshell_pb2.POLICY_STATUS_PENDING
    assert resp.policy_hash == got.policy_hash == policy_hash(got.policy_yaml)
    assert got.HasField("created_time") and not got.HasField("loaded_time")


def test_omitted_static_sections_are_kept_in_the_stored_document(wire, sandbox):
    update(wire, NETWORK_ONLY)
    stored = parse_policy(status(wire, 2).revision.policy_yaml)
    created = parse_policy(CREATED)
    assert (stored.filesystem, stored.landlock, stored.process) == (created.filesystem, created.landlock, created.process)
    assert [r.key for r in stored.network] == ["api"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (CREATED.replace("hard_requirement", "best_effort"), "policy_yaml.landlock.compatibility"),
        (CREATED.replace("read_write: [/tmp]", "read_write: [/tmp, /var]"), "policy_yaml.filesystem_policy.read_write"),
        (CREATED.replace("run_as_user: sandbox,", "run_as_user: 1234,"), "policy_yaml.process.run_as_user"),
    ],
)
def test_static_change_is_refused_before_storing_naming_the_field(wire, sandbox, change, field):
    err = rpc_error(lambda: update(wire, change))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(field + ":") and "recreate the sandbox" in err.details()
    assert [r.version for r in listing(wire).revisions] == [1]


def test_identical_static_sections_are_accepted(wire, sandbox):
    assert update(wire, CREATED + NETWORK_ONLY.split("\n", 1)[1]).version == 2


def test_invalid_policy_names_the_field(wire, sandbox):
    err = rpc_error(lambda: update(wire, "version: 1\nnetwork_policies:\n  x: {endpoints: [{host: '*', port: 1}], binaries: []}\n"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("policy_yaml.network_policies.x.endpoints[0].host:")


def test_empty_document_and_unknown_sandbox(wire, sandbox):
    err = rpc_error(lambda: update(wire, "  "))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("policy_yaml:")
    err = rpc_error(lambda: update(wire, NETWORK_ONLY, name="nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "sandbox 'nope' not found" in err.details()


def _with_unknown_field(wire_type_value: bytes) -> openshell_pb2.UpdateConfigRequest:
    """An UpdateConfigRequest carrying an SDK field we do not declare (as the SDK would send it)."""
    base = openshell_pb2.UpdateConfigRequest(sandbox="pol", workspace_scope=DEFAULT, policy_yaml=NETWORK_ONLY)
    raw = base.SerializeToString() + wire_type_value
    return openshell_pb2.UpdateConfigRequest.FromString(raw)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\x3a\x00", "merge_operations"),  # field 7
        (b"\x30\x01", "global"),  # field 6 = true
        (b"\x1a\x01k", "setting_key"),  # field 3
    ],
)
def test_sdk_fields_we_do_not_implement_are_refused_not_ignored(wire, sandbox, raw, field):
    err = rpc_error(lambda: wire.stub.UpdateConfig(_with_unknown_field(raw), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field + ":")
    assert [r.version for r in listing(wire).revisions] == [1]


def test_structured_policy_and_policy_yaml_together_are_refused(wire, sandbox):
    req = openshell_pb2.UpdateConfigRequest(sandbox="pol", workspace_scope=DEFAULT, policy_yaml=NETWORK_ONLY, policy=sandbox_pb2.SandboxPolicy(version=1))
    err = rpc_error(lambda: wire.stub.UpdateConfig(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == "policy: set policy or policy_yaml, not both"
    assert [r.version for r in listing(wire).revisions] == [1]


def test_structured_policy_update_is_stored_as_a_complete_document(wire, sandbox):
    rule = sandbox_pb2.NetworkPolicyRule(
        endpoints=[sandbox_pb2.NetworkEndpoint(host="a.example.test", port=443)], binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")]
    )
    reply = wire.stub.UpdateConfig(
        openshell_pb2.UpdateConfigRequest(sandbox="pol", workspace_scope=DEFAULT, policy=sandbox_pb2.SandboxPolicy(version=1, network_policies={"a": rule})),
        timeout=10,
    )
    newest = listing(wire).revisions[0]
    assert newest.version == reply.version == 2
    assert "filesystem_policy:" in newest.policy_yaml and "a.example.test" in newest.policy_yaml
    assert newest.policy.network_policies["a"].endpoints[0].port == 443 and newest.policy.filesystem.read_write


def test_active_revision_follows_supervisor_reports(wire, sandbox):
    # Nothing loaded yet (sandbox starting): version 0 answers the newest stored one.
    first = status(wire)
    assert first.active_version == 0 and first.revision.version == 1
    report(wire, sandbox, 1)
    update(wire, NETWORK_ONLY)
    pending = status(wire)
    assert pending.active_version == 1 and pending.revision.version == 1  # 2 is pending
    report(wire, sandbox, 2)
    loaded = status(wire)
    assert loaded.active_version == 2 and loaded.revision.status == openshell_pb2.POLICY_STATUS_LOADED
    assert loaded.revision.HasField("loaded_time")


def test_failed_revision_keeps_the_previous_one_active_with_its_reason(wire, sandbox):
    report(wire, sandbox, 1)
    update(wire, NETWORK_ONLY)
    report(wire, sandbox, 2, error="network_policies.api.endpoints[0].allowed_ips: overlaps")
    resp = status(wire)
    assert resp.active_version == 1 and resp.revision.version == 1
    failed = status(wire, 2).revision
    assert failed.status == openshell_pb2.POLICY_STATUS_FAILED and "overlaps" in failed.load_error
    # the sandbox reports the loaded revision too
    assert wire.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="pol", workspace_scope=DEFAULT)).sandbox.status.current_policy_version == 1


def test_unknown_revision_and_global_are_refused(wire, sandbox):
    err = rpc_error(lambda: status(wire, 9))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "policy revision 9 of sandbox 'pol'" in err.details()
    req = openshell_pb2.GetSandboxPolicyStatusRequest(sandbox="pol", workspace_scope=DEFAULT, **{"global": True})
    err = rpc_error(lambda: wire.stub.GetSandboxPolicyStatus(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_is_newest_first_and_pages_end_with_an_empty_token(wire, sandbox):
    for _ in range(4):
        update(wire, NETWORK_ONLY)
    seen, token, tokens = [], "", set()
    while True:
        page = listing(wire, page_size=2, token=token)
        seen += [r.version for r in page.revisions]
        token = page.next_page_token
        if not token:
            break
        assert token not in tokens
        tokens.add(token)
    assert seen == [5, 4, 3, 2, 1]
    err = rpc_error(lambda: listing(wire, token="garbage!"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("page_token:")


def test_supervisor_watch_receives_the_stored_revision(wire, sandbox):
    got: list[supervisor_pb2.PolicyRevision] = []
    call = wire.sup.WatchPolicy(supervisor_pb2.WatchPolicyRequest(after_revision=1), metadata=wire.meta(sandbox.metadata.id))

    def reader():
        for rev in call:
            got.append(rev)
            return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    update(wire, NETWORK_ONLY)
    thread.join(10)
    call.cancel()
    assert [r.revision for r in got] == [2] and "api.example.test" in got[0].policy_yaml


def test_wire_shapes_match_the_sdk():
    """Field numbers shared with openshell==0.1.5 (docs/sdk-compat.md)."""
    expected = {
        "UpdateConfigRequest": {"sandbox": 1, "workspace_scope": 10, "request_id": 11},
        "UpdateConfigResponse": {"version": 1, "policy_hash": 2},
        "SandboxPolicyRevision": {"version": 1, "policy_hash": 2, "status": 3, "load_error": 4, "created_time": 105, "loaded_time": 106},
        "GetSandboxPolicyStatusRequest": {"sandbox": 1, "version": 2, "global": 3, "workspace_scope": 4},
        "GetSandboxPolicyStatusResponse": {"revision": 1, "active_version": 2},
        "ListSandboxPoliciesRequest": {"sandbox": 1, "page_size": 2, "page_token": 3, "global": 4, "workspace_scope": 5},
        "ListSandboxPoliciesResponse": {"revisions": 1, "next_page_token": 2},
    }
    for message, fields in expected.items():
        desc = getattr(openshell_pb2, message).DESCRIPTOR
        assert {f: desc.fields_by_name[f].number for f in fields} == fields, message
    proto = descriptor_pb2.FileDescriptorProto()
    openshell_pb2.DESCRIPTOR.CopyToProto(proto)
    statuses = {v.name: v.number for e in proto.enum_type if e.name == "PolicyStatus" for v in e.value}
    assert statuses == {
        "POLICY_STATUS_UNSPECIFIED": 0,
        "POLICY_STATUS_PENDING": 1,
        "POLICY_STATUS_LOADED": 2,
        "POLICY_STATUS_FAILED": 3,
        "POLICY_STATUS_SUPERSEDED": 4,
    }


def test_oversized_document_is_refused_before_parsing(wire, sandbox):
    huge = NETWORK_ONLY + "#" * MAX_POLICY_BYTES + "\n"
    err = rpc_error(lambda: update(wire, huge))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most" in err.details()


def test_pending_revision_below_the_loaded_one_is_superseded(wire, sandbox):
    # Stored before the supervisor fetched its config: it starts with the newest (2)
    # and reports that one loaded; revision 1 will never be loaded.
    update(wire, NETWORK_ONLY)
    report(wire, sandbox, 2)
    assert [(r.version, r.status) for r in listing(wire).revisions] == [(2, openshell_pb2.POLICY_STATUS_LOADED), (1, openshell_pb2.POLICY_STATUS_SUPERSEDED)]
    assert status(wire, 1).revision.status == openshell_pb2.POLICY_STATUS_SUPERSEDED
