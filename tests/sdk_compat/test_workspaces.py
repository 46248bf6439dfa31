"""Workspaces through the published SDK (``WorkspaceClient``; see docs/sdk-compat.md).

Each test makes its own workspaces (names with the test's prefix) and deletes
what it made, so it sees only its own things on the session gateway.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(900)


def test_sdk_workspace_create_get_list_delete(gateway, sdk):
    result = sdk(
        """
        import json
        from openshell import GatewayError, SandboxClient, WorkspaceClient

        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            ws = WorkspaceClient.from_sandbox_client(client)
            made = ws.create("sdkws-a", labels={"suite": "sdkws"})
            out["made"] = [made.name, made.phase, made.labels]
            ws.create("sdkws-b")
            out["got"] = ws.get("sdkws-a").name
            mine = ("default", "sdkws-a", "sdkws-b")
            out["listed"] = [w.name for w in ws.list_all() if w.name in mine]
            out["paged"] = [w.name for w in ws.list_all(page_size=1) if w.name in mine]
            out["selected"] = [w.name for w in ws.list_all(label_selector="suite=sdkws")]
            try:
                ws.create("sdkws-a")
            except GatewayError as exc:
                out["again"] = exc.code().name
            for name in ("sdkws-a", "sdkws-b"):
                out.setdefault("deleted", []).append(ws.delete(name).outcome.name)
            try:
                ws.get("sdkws-a")
            except GatewayError as exc:
                out["after"] = exc.code().name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert result["made"] == ["sdkws-a", "WORKSPACE_PHASE_ACTIVE", {"suite": "sdkws"}]
    assert result["got"] == "sdkws-a"
    assert result["listed"] == ["default", "sdkws-a", "sdkws-b"]
    assert result["paged"] == ["default", "sdkws-a", "sdkws-b"]
    assert result["selected"] == ["sdkws-a"]
    assert result["again"] == "ALREADY_EXISTS"
    assert result["deleted"] == ["COMPLETED", "COMPLETED"]
    assert result["after"] == "NOT_FOUND"


def test_sdk_workspace_delete_unknown_default_and_non_empty(gateway, sdk):
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
            templates = SandboxTemplateClient.from_sandbox_client(client)
            out["unknown"] = code(lambda: ws.delete("sdkws-nothing"))
            out["unknown_allowed"] = ws.delete("sdkws-nothing", allow_missing=True).outcome.name
            out["default"] = code(lambda: ws.delete("default"))
            ws.create("sdkws-full")
            templates.create(workspace="sdkws-full", name="t1")
            out["non_empty"] = code(lambda: ws.delete("sdkws-full"))
            out["still_there"] = ws.get("sdkws-full").name
            templates.delete("t1", workspace="sdkws-full")
            out["emptied"] = ws.delete("sdkws-full").outcome.name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert result["unknown"][0] == "NOT_FOUND" and "workspace 'sdkws-nothing' not found" in result["unknown"][1]
    assert result["unknown_allowed"] == "ALREADY_ABSENT"
    assert result["default"] == ["FAILED_PRECONDITION", "workspace 'default' cannot be deleted"]
    assert result["non_empty"] == ["FAILED_PRECONDITION", "workspace 'sdkws-full' is not empty (templates t1); delete them first"]
    assert result["still_there"] == "sdkws-full"
    assert result["emptied"] == "COMPLETED"


def test_sdk_sandboxes_providers_and_policies_are_scoped_to_their_workspace(gateway, sdk):
    result = sdk(
        """
        import json
        import grpc
        from openshell import SandboxClient, WorkspaceClient
        from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc

        def code(call):
            try:
                call()
                return "OK"
            except grpc.RpcError as exc:  # the SDK's GatewayError is one too
                return exc.code().name

        def scope(name):
            return datamodel_pb2.WorkspaceSelector(workspace=name)

        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            ws = WorkspaceClient.from_sandbox_client(client)
            ws.create("sdkws-scope")
            # The SDK has no provider or policy client: its generated stub over the same channel.
            stub = openshell_pb2_grpc.OpenShellStub(client._channel)
            try:
                ref = client.create(workspace="sdkws-scope", name="sdkws-sb", labels={"suite": "sdkws-scope"})
                out["created"] = [ref.name, ref.workspace]
                out["in_default"] = code(lambda: client.get("sdkws-sb", workspace="default"))
                out["listed"] = [s.name for s in client.list_all(workspace="sdkws-scope")]
                out["listed_default"] = [s.name for s in client.list_all(workspace="default", label_selector="suite=sdkws-scope")]
                out["all"] = [[s.workspace, s.name] for s in client.list_all_for_all_workspaces(label_selector="suite=sdkws-scope")]
                out["all_ids"] = ref.id in client.list_ids_for_all_workspaces()
                ready = client.wait_ready("sdkws-sb", workspace="sdkws-scope", timeout_seconds=180)
                out["phase"] = int(ready.phase)
                out["exec"] = client.exec("sdkws-sb", ["echo", "hi"], workspace="sdkws-scope").stdout
                # A policy revision addresses the sandbox in its own workspace only.
                status = openshell_pb2.GetSandboxPolicyStatusRequest(sandbox="sdkws-sb", workspace_scope=scope("sdkws-scope"))
                out["policy"] = stub.GetSandboxPolicyStatus(status, timeout=30).revision.version
                status.workspace_scope.CopyFrom(scope("default"))
                out["policy_default"] = code(lambda: stub.GetSandboxPolicyStatus(status, timeout=30))
                provider = datamodel_pb2.Provider(metadata=datamodel_pb2.ObjectMeta(name="sdkws-p"), type="generic", credentials={"TOKEN": "x"})
                stub.CreateProvider(openshell_pb2.CreateProviderRequest(provider=provider, workspace_scope=scope("sdkws-scope")), timeout=30)
                get = openshell_pb2.GetProviderRequest(name="sdkws-p", workspace_scope=scope("default"))
                out["provider_default"] = code(lambda: stub.GetProvider(get, timeout=30))
                listed = stub.ListProviders(openshell_pb2.ListProvidersRequest(workspace_scope=scope("sdkws-scope")), timeout=30)
                out["providers"] = [p.metadata.name for p in listed.providers]
                out["non_empty"] = code(lambda: ws.delete("sdkws-scope"))
            finally:
                client.delete("sdkws-sb", workspace="sdkws-scope", allow_missing=True)
                stub.DeleteProvider(openshell_pb2.DeleteProviderRequest(name="sdkws-p", workspace_scope=scope("sdkws-scope"), allow_missing=True), timeout=30)
            out["deleted"] = ws.delete("sdkws-scope").outcome.name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert result["created"] == ["sdkws-sb", "sdkws-scope"]
    assert result["in_default"] == "NOT_FOUND"
    assert result["listed"] == ["sdkws-sb"] and result["listed_default"] == []
    assert result["all"] == [["sdkws-scope", "sdkws-sb"]] and result["all_ids"] is True
    assert result["phase"] == 2  # SANDBOX_PHASE_READY
    assert result["exec"] == "hi\n"
    assert result["policy"] == 1 and result["policy_default"] == "NOT_FOUND"
    assert result["provider_default"] == "NOT_FOUND" and result["providers"] == ["sdkws-p"]
    assert result["non_empty"] == "FAILED_PRECONDITION"
    assert result["deleted"] == "COMPLETED"
