"""Sandbox templates through the published SDK (``SandboxTemplateClient``,
``create_from_template``, ``Sandbox(workload_template=…)``; see docs/sdk-compat.md).

The session gateway runs the ``local`` driver, which has no images: a template
naming one is stored and listed, and a sandbox made from it is refused.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(900)


def test_sdk_template_create_get_list_delete_across_workspaces(gateway, sdk):
    result = sdk(
        """
        import json
        from openshell import GatewayError, SandboxClient, SandboxTemplateClient, WorkspaceClient

        def code(call):
            try:
                call()
                return "OK"
            except GatewayError as exc:
                return [exc.code().name, exc.details()]

        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            ws = WorkspaceClient.from_sandbox_client(client)
            templates = client.sandbox_templates()
            ws.create("sdkt-w")
            made = templates.create(
                workspace="default", name="sdkt-py", image="python:3.12", labels={"suite": "sdkt"},
                environment={"GREETING": "hello"}, cpu="1", memory="256Mi",
            )
            w = made.spec.workload
            out["made"] = [made.metadata.name, made.metadata.workspace, w.image, dict(w.environment), w.resources.cpu, w.resources.memory]
            out["version"] = made.metadata.resource_version
            templates.create(workspace="sdkt-w", name="sdkt-py", labels={"suite": "sdkt"})
            templates.create(workspace="sdkt-w", name="sdkt-go")
            out["got"] = templates.get("sdkt-py", workspace="default") == made
            out["default"] = [t.metadata.name for t in templates.list_all(workspace="default", label_selector="suite=sdkt")]
            out["w"] = [t.metadata.name for t in templates.list_all(workspace="sdkt-w", page_size=1)]
            out["all"] = [[t.metadata.workspace, t.metadata.name] for t in templates.list_all_for_all_workspaces(label_selector="suite=sdkt")]
            out["all_paged"] = sum(1 for t in templates.list_for_all_workspaces(page_size=1).all() if t.metadata.name in ("sdkt-py", "sdkt-go"))
            out["taken"] = code(lambda: templates.create(workspace="default", name="sdkt-py"))[0]
            out["gpu"] = code(lambda: templates.create(workspace="default", name="sdkt-gpu", gpu=True))
            out["bad_cpu"] = code(lambda: templates.create(workspace="default", name="sdkt-cpu", cpu="lots"))[0]
            out["deleted"] = [
                templates.delete("sdkt-py", workspace="default").outcome.name,
                templates.delete("sdkt-py", workspace="default", allow_missing=True).outcome.name,
            ]
            out["unknown"] = code(lambda: templates.delete("sdkt-py", workspace="default"))
            out["get_unknown"] = code(lambda: templates.get("sdkt-py", workspace="default"))[0]
            out["other_kept"] = templates.get("sdkt-py", workspace="sdkt-w").metadata.name
            for name in ("sdkt-py", "sdkt-go"):
                templates.delete(name, workspace="sdkt-w")
            out["ws_deleted"] = ws.delete("sdkt-w").outcome.name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert result["made"] == ["sdkt-py", "default", "python:3.12", {"GREETING": "hello"}, "1", "256Mi"]
    assert result["version"] >= 1
    assert result["got"] is True
    assert result["default"] == ["sdkt-py"]
    assert result["w"] == ["sdkt-go", "sdkt-py"]
    assert result["all"] == [["default", "sdkt-py"], ["sdkt-w", "sdkt-py"]]
    assert result["all_paged"] == 3
    assert result["taken"] == "ALREADY_EXISTS"
    assert result["gpu"] == ["INVALID_ARGUMENT", "template.spec.workload.resources.gpu: not supported by this gateway"]
    assert result["bad_cpu"] == "INVALID_ARGUMENT"
    assert result["deleted"] == ["COMPLETED", "ALREADY_ABSENT"]
    assert result["unknown"] == ["NOT_FOUND", "sandbox template 'sdkt-py' not found in workspace 'default'"]
    assert result["get_unknown"] == "NOT_FOUND"
    assert result["other_kept"] == "sdkt-py"
    assert result["ws_deleted"] == "COMPLETED"


def test_sdk_sandbox_from_template_runs_with_its_settings_and_reports_it(gateway, sdk):
    result = sdk(
        """
        import json, os, pathlib
        from openshell import GatewayError, Sandbox, SandboxClient
        from openshell._proto import openshell_pb2

        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            templates = client.sandbox_templates()
            made = templates.create(workspace="default", name="sdkt-env", environment={"GREETING": "hello", "WHO": "template"}, memory="256Mi")
            try:
                spec = openshell_pb2.SandboxSpec(environment={"WHO": "caller"})
                ref = client.create_from_template(workspace="default", workload_template="sdkt-env", name="sdkt-sb", spec=spec)
                src = ref.created_from_workload_template
                out["source"] = [src.name, src.resource_version == str(made.metadata.resource_version)]
                client.wait_ready("sdkt-sb", workspace="default", timeout_seconds=180)
                res = client.exec("sdkt-sb", ["sh", "-c", "echo $GREETING $WHO"], workspace="default")
                out["env"] = [res.exit_code, res.stdout]
                # The template's memory limit on the sandbox's cgroup (read on the host; the script runs as root there).
                cg = json.loads((pathlib.Path(os.environ["GATEWAY_STATE_DIR"]) / "sandboxes" / ref.id / "cgroup.json").read_text())
                limit = pathlib.Path(cg["dirs"]["memory"], "memory.limit_in_bytes") if cg["version"] == 1 else pathlib.Path(cg["dirs"]["unified"], "memory.max")
                out["memory"] = limit.read_text().strip()
                got = client.get("sdkt-sb", workspace="default").created_from_workload_template
                out["get_source"] = [got.name, got.resource_version] == [src.name, src.resource_version]
                client.delete("sdkt-sb", workspace="default")
                with Sandbox(workspace="default", workload_template="sdkt-env", ready_timeout_seconds=180, timeout=60) as sb:
                    out["session_source"] = sb.sandbox.created_from_workload_template.name
                    out["session_env"] = sb.exec(["sh", "-c", "echo $WHO"]).stdout
                try:
                    client.create_from_template(workspace="default", workload_template="sdkt-nothing")
                except GatewayError as exc:
                    out["unknown"] = [exc.code().name, exc.details()]
            finally:
                client.delete("sdkt-sb", workspace="default", allow_missing=True)
                templates.delete("sdkt-env", workspace="default")
        print(json.dumps(out))
        """,
        env=dict(gateway.env, GATEWAY_STATE_DIR=str(gateway.state_dir)),
    )
    assert result["source"] == ["sdkt-env", True]
    assert result["env"] == [0, "hello caller\n"]
    assert result["get_source"] is True
    assert result["memory"] == str(256 * 2**20)
    assert result["session_source"] == "sdkt-env"
    assert result["session_env"] == "template\n"
    assert result["unknown"] == ["NOT_FOUND", "sandbox template 'sdkt-nothing' not found in workspace 'default'"]


def test_sdk_template_with_an_image_is_refused_by_the_local_driver(gateway, sdk):
    result = sdk(
        """
        import json
        from openshell import GatewayError, SandboxClient

        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            templates = client.sandbox_templates()
            templates.create(workspace="default", name="sdkt-img", image="python:3.12")
            try:
                client.create_from_template(workspace="default", workload_template="sdkt-img", name="sdkt-img-sb")
                out["created"] = "created"
            except GatewayError as exc:
                out["created"] = [exc.code().name, exc.details()]
            finally:
                client.delete("sdkt-img-sb", workspace="default", allow_missing=True)
                templates.delete("sdkt-img", workspace="default")
            try:
                client.get("sdkt-img-sb", workspace="default")
                out["after"] = "exists"
            except GatewayError as exc:
                out["after"] = exc.code().name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    code, details = result["created"]
    assert code == "FAILED_PRECONDITION"
    assert details.startswith("image 'python:3.12' of sandbox template 'sdkt-img': compute driver 'local' has no images")
    assert result["after"] == "NOT_FOUND"
