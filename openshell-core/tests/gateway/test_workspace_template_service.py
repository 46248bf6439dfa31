"""Workspaces and sandbox templates over the wire (real grpc.aio server and SQLite store;
``WireServer`` of test_service.py, whose compute driver records what it was asked)."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from openshell._proto import datamodel_pb2, openshell_pb2, supervisor_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_service import DEFAULT, WireServer, code_of  # noqa: E402

pytestmark = pytest.mark.timeout(60)

ALL = datamodel_pb2.WorkspaceSelector(all_workspaces=datamodel_pb2.AllWorkspaces())
POLICY = "version: 1\nnetwork_policies:\n  api: {endpoints: [{host: api.example.test, port: 443}], binaries: [{path: /usr/bin/curl}]}\n"


def ws(name: str) -> datamodel_pb2.WorkspaceSelector:
    return datamodel_pb2.WorkspaceSelector(workspace=name)


@pytest.fixture
def wire(tmp_path):
    srv = WireServer(tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def create_ws(wire, name: str, **labels: str) -> datamodel_pb2.Workspace:
    return wire.stub.CreateWorkspace(openshell_pb2.CreateWorkspaceRequest(name=name, labels=labels), timeout=10).workspace


def delete_ws(wire, name: str, allow_missing: bool = False) -> int:
    return wire.stub.DeleteWorkspace(openshell_pb2.DeleteWorkspaceRequest(name=name, allow_missing=allow_missing), timeout=10).outcome


def template(name: str, *, image: str = "", env: dict | None = None, cpu: str = "", memory: str = "", policy: str = "", **labels: str):
    return openshell_pb2.SandboxWorkloadTemplate(
        metadata=datamodel_pb2.ObjectMeta(name=name, labels=labels),
        spec=openshell_pb2.SandboxWorkloadTemplateSpec(
            workload=openshell_pb2.SandboxWorkloadConfig(image=image, environment=env or {}, resources=openshell_pb2.SandboxResources(cpu=cpu, memory=memory)),
            policy_yaml=policy,
        ),
    )


def create_t(wire, t, workspace: str = "default") -> openshell_pb2.SandboxWorkloadTemplate:
    return wire.stub.CreateSandboxTemplate(openshell_pb2.CreateSandboxTemplateRequest(template=t, workspace_scope=ws(workspace)), timeout=10).template


def create_sb(wire, name: str, workspace: str = "default", workload_template: str = "", **spec) -> openshell_pb2.Sandbox:
    req = openshell_pb2.CreateSandboxRequest(
        workspace_scope=ws(workspace), name=name, workload_template=workload_template, spec=openshell_pb2.SandboxSpec(**spec)
    )
    return wire.stub.CreateSandbox(req, timeout=10).sandbox


# --------------------------------------------------------------------------- workspaces


def test_create_get_list_workspaces_with_labels_and_pages(wire):
    made = create_ws(wire, "team-a", tier="dev")
    assert made.metadata.name == "team-a" and made.metadata.id and dict(made.metadata.labels) == {"tier": "dev"}
    assert made.status.phase == datamodel_pb2.WORKSPACE_PHASE_ACTIVE
    create_ws(wire, "team-b")
    got = wire.stub.GetWorkspace(openshell_pb2.GetWorkspaceRequest(name="team-a"), timeout=10).workspace
    assert got.metadata.id == made.metadata.id

    def names(**kw) -> list[str]:
        return [w.metadata.name for w in wire.stub.ListWorkspaces(openshell_pb2.ListWorkspacesRequest(**kw), timeout=10).workspaces]

    assert names() == ["default", "team-a", "team-b"]
    assert names(label_selector="tier=dev") == ["team-a"]
    first = wire.stub.ListWorkspaces(openshell_pb2.ListWorkspacesRequest(page_size=2), timeout=10)
    assert [w.metadata.name for w in first.workspaces] == ["default", "team-a"] and first.next_page_token
    rest = wire.stub.ListWorkspaces(openshell_pb2.ListWorkspacesRequest(page_size=2, page_token=first.next_page_token), timeout=10)
    assert [w.metadata.name for w in rest.workspaces] == ["team-b"] and rest.next_page_token == ""


@pytest.mark.parametrize(("name", "labels", "field"), [("Bad_Name", {}, "name"), ("", {}, "name"), ("ok", {"-x": "1"}, "labels.-x")])
def test_create_workspace_invalid_argument_names_the_field(wire, name, labels, field):
    err = code_of(lambda: create_ws(wire, name, **labels))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(f"{field}:")


def test_create_taken_workspace_is_already_exists(wire):
    create_ws(wire, "w")
    for name in ("w", "default"):
        assert code_of(lambda name=name: create_ws(wire, name)).code() == grpc.StatusCode.ALREADY_EXISTS


def test_delete_workspace_unknown_default_and_empty(wire):
    err = code_of(lambda: delete_ws(wire, "nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "workspace 'nope' not found" in err.details()
    assert delete_ws(wire, "nope", allow_missing=True) == openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT
    err = code_of(lambda: delete_ws(wire, "default"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "'default' cannot be deleted" in err.details()
    create_ws(wire, "w")
    assert delete_ws(wire, "w") == openshell_pb2.DELETION_OUTCOME_COMPLETED
    assert code_of(lambda: wire.stub.GetWorkspace(openshell_pb2.GetWorkspaceRequest(name="w"), timeout=10)).code() == grpc.StatusCode.NOT_FOUND


def test_delete_non_empty_workspace_is_refused_naming_what_it_holds(wire):
    create_ws(wire, "w")
    create_sb(wire, "s1", "w")
    wire.stub.CreateProvider(
        openshell_pb2.CreateProviderRequest(
            provider=datamodel_pb2.Provider(metadata=datamodel_pb2.ObjectMeta(name="p1"), type="generic", credentials={"TOKEN": "x"}), workspace_scope=ws("w")
        ),
        timeout=10,
    )
    create_t(wire, template("t1"), "w")
    err = code_of(lambda: delete_ws(wire, "w"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "workspace 'w' is not empty (sandboxes s1; providers p1; templates t1); delete them first"
    assert ("openshell-error-reason", "WORKSPACE_NOT_EMPTY") in err.trailing_metadata()
    wire.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="s1", workspace_scope=ws("w")), timeout=10)
    wire.stub.DeleteProvider(openshell_pb2.DeleteProviderRequest(name="p1", workspace_scope=ws("w")), timeout=10)
    wire.stub.DeleteSandboxTemplate(openshell_pb2.DeleteSandboxTemplateRequest(name="t1", workspace_scope=ws("w")), timeout=10)
    assert delete_ws(wire, "w") == openshell_pb2.DELETION_OUTCOME_COMPLETED


def test_sandboxes_are_scoped_to_their_workspace(wire):
    create_ws(wire, "w")
    a = create_sb(wire, "same")
    b = create_sb(wire, "same", "w")
    assert a.metadata.workspace == "default" and b.metadata.workspace == "w" and a.metadata.id != b.metadata.id

    def listed(scope) -> list[tuple[str, str]]:
        resp = wire.stub.ListSandboxes(openshell_pb2.ListSandboxesRequest(workspace_scope=scope), timeout=10)
        return [(s.metadata.workspace, s.metadata.name) for s in resp.sandboxes]

    assert listed(ws("w")) == [("w", "same")]
    assert listed(ALL) == [("default", "same"), ("w", "same")]
    wire.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="same", workspace_scope=ws("w")), timeout=10)
    assert listed(ALL) == [("default", "same")]
    err = code_of(lambda: create_sb(wire, "x", "nowhere"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "workspace 'nowhere'" in err.details()


# --------------------------------------------------------------------------- templates


def test_template_create_get_list_delete(wire):
    create_ws(wire, "w")
    made = create_t(wire, template("py", env={"A": "1"}, cpu="1.5", memory="512Mi", policy=POLICY, team="x"))
    assert made.metadata.name == "py" and made.metadata.workspace == "default" and made.metadata.id
    assert made.metadata.resource_version >= 1 and dict(made.metadata.labels) == {"team": "x"}
    workload = made.spec.workload
    assert dict(workload.environment) == {"A": "1"} and (workload.resources.cpu, workload.resources.memory) == ("1.5", "512Mi")
    assert made.spec.policy_yaml == POLICY
    create_t(wire, template("py"), "w")
    create_t(wire, template("go"), "w")
    got = wire.stub.GetSandboxTemplate(openshell_pb2.GetSandboxTemplateRequest(name="py", workspace_scope=DEFAULT), timeout=10).template
    assert got == made

    def listed(scope, **kw) -> list[tuple[str, str]]:
        resp = wire.stub.ListSandboxTemplates(openshell_pb2.ListSandboxTemplatesRequest(workspace_scope=scope, **kw), timeout=10)
        return [(t.metadata.workspace, t.metadata.name) for t in resp.templates]

    assert listed(ws("w")) == [("w", "go"), ("w", "py")]
    assert listed(ALL) == [("default", "py"), ("w", "go"), ("w", "py")]
    assert listed(ALL, label_selector="team=x") == [("default", "py")]
    page = wire.stub.ListSandboxTemplates(openshell_pb2.ListSandboxTemplatesRequest(workspace_scope=ALL, page_size=2), timeout=10)
    rest = wire.stub.ListSandboxTemplates(
        openshell_pb2.ListSandboxTemplatesRequest(workspace_scope=ALL, page_size=2, page_token=page.next_page_token), timeout=10
    )
    assert [t.metadata.name for t in (*page.templates, *rest.templates)] == ["py", "go", "py"] and rest.next_page_token == ""

    delete = openshell_pb2.DeleteSandboxTemplateRequest(name="py", workspace_scope=DEFAULT)
    assert wire.stub.DeleteSandboxTemplate(delete, timeout=10).outcome == openshell_pb2.DELETION_OUTCOME_COMPLETED
    err = code_of(lambda: wire.stub.DeleteSandboxTemplate(delete, timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "sandbox template 'py' not found in workspace 'default'"
    delete.allow_missing = True
    assert wire.stub.DeleteSandboxTemplate(delete, timeout=10).outcome == openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT
    err = code_of(lambda: wire.stub.GetSandboxTemplate(openshell_pb2.GetSandboxTemplateRequest(name="py", workspace_scope=DEFAULT), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_template_taken_name_and_unknown_workspace(wire):
    create_t(wire, template("py"))
    assert code_of(lambda: create_t(wire, template("py"))).code() == grpc.StatusCode.ALREADY_EXISTS
    err = code_of(lambda: create_t(wire, template("py"), "nowhere"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "workspace 'nowhere'" in err.details()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Bad Name"}, "template.metadata.name"),
        ({"name": "t", "cpu": "lots"}, "template.spec.workload.resources.cpu"),
        ({"name": "t", "memory": "-1"}, "template.spec.workload.resources.memory"),
        ({"name": "t", "env": {"1X": "y"}}, "template.spec.workload.environment.1X"),
        ({"name": "t", "image": "no spaces"}, "template.spec.workload.image"),
        ({"name": "t", "policy": "version: 1\nbogus: 1\n"}, "template.spec.policy_yaml"),
    ],
)
def test_template_invalid_argument_names_the_field(wire, kwargs, field):
    err = code_of(lambda: create_t(wire, template(**kwargs)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field), err.details()


def test_template_fields_we_do_not_implement_are_refused(wire):
    gpu = template("g")
    # SandboxResources.gpu (3) of the SDK's schema: a GpuResourceRequirements{count=1}
    gpu.spec.workload.resources.MergeFromString(bytes([3 << 3 | 2, 2, 1 << 3, 1]))
    driver_config = template("d")
    # SandboxWorkloadTemplateSpec.driver_config (2): a Struct
    driver_config.spec.MergeFromString(bytes([2 << 3 | 2, 0]))
    for t, field in ((gpu, "template.spec.workload.resources.gpu"), (driver_config, "template.spec.driver_config")):
        err = code_of(lambda t=t: create_t(wire, t))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(f"{field}: not supported"), err.details()


def test_sandbox_from_template_gets_its_settings_and_reports_its_source(wire):
    made = create_t(wire, template("py", env={"A": "t", "B": "t"}, cpu="1", memory="256Mi", policy=POLICY))
    resources = struct_pb2.Struct()
    resources.update({"limits": {"memory": "512Mi"}})
    sb = create_sb(wire, "from-t", workload_template="py", environment={"B": "own"}, template=openshell_pb2.SandboxTemplate(resources=resources))
    source = sb.created_from_workload_template
    assert (source.name, source.resource_version) == ("py", str(made.metadata.resource_version))
    sent = wire.driver.created[sb.metadata.id]
    assert sent["spec"]["environment"] == {"A": "t", "B": "own"}
    assert sent["spec"]["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}}
    assert sent["policy_yaml"] == POLICY and "image" not in sent["spec"]
    got = wire.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="from-t", workspace_scope=DEFAULT), timeout=10).sandbox
    assert got.created_from_workload_template == source and dict(got.spec.environment) == {"A": "t", "B": "own"}
    # The supervisor gets the template's policy as revision 1.
    config = wire.sup.GetSandboxConfig(supervisor_pb2.GetSandboxConfigRequest(), metadata=wire.meta(sb.metadata.id), timeout=10)
    assert config.policy.revision == 1 and config.policy.policy_yaml == POLICY
    plain = create_sb(wire, "plain")
    assert not plain.HasField("created_from_workload_template")
    # A policy of the request wins over the template's; the template may go, the sandbox stays.
    own = create_sb(wire, "own-policy", workload_template="py", policy_yaml="version: 1\n")
    assert wire.driver.created[own.metadata.id]["policy_yaml"] == "version: 1\n"
    wire.stub.DeleteSandboxTemplate(openshell_pb2.DeleteSandboxTemplateRequest(name="py", workspace_scope=DEFAULT), timeout=10)
    again = create_t(wire, template("py"))
    assert again.metadata.resource_version > made.metadata.resource_version
    got = wire.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name="from-t", workspace_scope=DEFAULT), timeout=10).sandbox
    assert got.created_from_workload_template.resource_version == str(made.metadata.resource_version)


def test_sandbox_from_unknown_or_other_workspace_template_is_not_found(wire):
    create_ws(wire, "w")
    create_t(wire, template("py"), "w")
    err = code_of(lambda: create_sb(wire, "x", workload_template="py"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "sandbox template 'py' not found in workspace 'default'"
    assert wire.driver.created == {}
    assert create_sb(wire, "x", "w", workload_template="py").created_from_workload_template.name == "py"


def test_template_image_is_refused_on_a_driver_without_images_and_used_by_one_with(wire, monkeypatch):
    create_t(wire, template("img", image="python:3.12"))
    err = code_of(lambda: create_sb(wire, "x", workload_template="img"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details().startswith("image 'python:3.12' of sandbox template 'img': compute driver 'recording' has no images")
    assert wire.driver.created == {}
    monkeypatch.setattr(type(wire.driver), "supports_images", True)
    sb = create_sb(wire, "x", workload_template="img")
    assert wire.driver.created[sb.metadata.id]["spec"]["image"] == "python:3.12"
    assert sb.spec.template.image == "python:3.12"
