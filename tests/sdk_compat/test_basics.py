"""The published SDK's basic flows against our gateway (see conftest.py, docs/sdk-compat.md)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(900)


# --------------------------------------------------------------------------- wire shapes


def _our_messages() -> dict:
    from openshell._proto import datamodel_pb2, openshell_pb2, sandbox_pb2

    out = {}
    for module in (openshell_pb2, datamodel_pb2, sandbox_pb2):
        for msg in module.DESCRIPTOR.message_types_by_name.values():
            out[msg.full_name] = {f.name: [f.number, f.type, f.is_repeated] for f in msg.fields if f.number < 1000}
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            out[enum.full_name] = {v.name: v.number for v in enum.values}
    return out


def test_shared_messages_match_the_sdk_wire_shapes(sdk):
    ours = _our_messages()
    theirs = sdk(
        f"""
        import json
        from openshell._proto import openshell_pb2
        pool = openshell_pb2.DESCRIPTOR.pool
        names = {sorted(ours)!r}
        out = {{}}
        for name in names:
            try:
                msg = pool.FindMessageTypeByName(name)
                out[name] = {{f.name: [f.number, f.type, f.is_repeated] for f in msg.fields}}
            except KeyError:
                try:
                    enum = pool.FindEnumTypeByName(name)
                    out[name] = {{v.name: v.number for v in enum.values}}
                except KeyError:
                    out[name] = None
        svc = pool.FindServiceByName("openshell.v1.OpenShell")
        out["__methods__"] = {{m.name: [m.input_type.full_name, m.output_type.full_name, m.server_streaming] for m in svc.methods}}
        print(json.dumps(out))
        """,
    )
    for name, fields in ours.items():
        assert theirs[name] is not None, f"{name} does not exist in the SDK"
        for field, shape in fields.items():
            assert theirs[name].get(field) == shape, f"{name}.{field}: ours {shape}, SDK {theirs[name].get(field)}"
    from openshell._proto import openshell_pb2

    for method in openshell_pb2.DESCRIPTOR.services_by_name["OpenShell"].methods:
        expected = [method.input_type.full_name, method.output_type.full_name, method.server_streaming]
        assert theirs["__methods__"][method.name] == expected, method.name


# --------------------------------------------------------------------------- against a gateway


def test_sdk_create_wait_exec_list_delete(gateway, sdk):
    result = sdk(
        """
        import json, grpc
        from openshell import SandboxClient, DeletionOutcome

        out = {}
        name = "sdk-compat"
        with SandboxClient.from_active_cluster(timeout=60) as client:
            out["health"] = int(client.health().status)
            ref = client.create(workspace="default", name=name, labels={"suite": "sdk-compat"})
            out["created"] = [ref.name, ref.workspace, bool(ref.id)]
            ready = client.wait_ready(name, workspace="default", timeout_seconds=180)
            out["phase"] = int(ready.phase)
            res = client.exec(name, ["echo", "hello"], workspace="default", timeout_seconds=60)
            out["exec"] = [res.exit_code, res.stdout, res.stderr]
            res = client.exec(name, ["sh", "-c", "cat; exit 3"], workspace="default", stdin=b"piped")
            out["exec_stdin"] = [res.exit_code, res.stdout]
            listed = client.list_all(workspace="default", label_selector="suite=sdk-compat", page_size=1)
            out["listed"] = [s.name for s in listed]
            out["listed_ids"] = ref.id in client.list_ids(workspace="default", page_size=1)
            deleted = client.delete(name, workspace="default")
            out["delete"] = [deleted.outcome.name, deleted.sandbox_id == ref.id]
            try:
                client.get(name, workspace="default")
                out["after_delete"] = "still there"
            except grpc.RpcError as exc:
                out["after_delete"] = exc.code().name
            again = client.delete(name, workspace="default", allow_missing=True)
            out["delete_again"] = again.outcome.name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert result["health"] == 1  # SERVICE_STATUS_HEALTHY
    assert result["created"] == ["sdk-compat", "default", True]
    assert result["phase"] == 2  # SANDBOX_PHASE_READY
    assert result["exec"] == [0, "hello\n", ""]
    assert result["exec_stdin"] == [3, "piped"]
    assert result["listed"] == ["sdk-compat"]
    assert result["listed_ids"] is True
    assert result["delete"] == ["COMPLETED", True]
    assert result["after_delete"] == "NOT_FOUND"
    assert result["delete_again"] == "ALREADY_ABSENT"


def test_sdk_sandbox_context_manager_and_exec_timeout(gateway, sdk):
    result = sdk(
        """
        import json, grpc
        from openshell import Sandbox, SandboxClient

        out = {}
        with Sandbox(workspace="default", ready_timeout_seconds=180, timeout=60) as sb:
            out["name"] = sb.sandbox.name
            res = sb.exec(["echo", "hello"])
            out["exec"] = [res.exit_code, res.stdout]
            res = sb.exec(["sleep", "30"], timeout_seconds=1)
            out["timeout_exit"] = res.exit_code
        with SandboxClient.from_active_cluster() as client:
            try:
                client.get(out["name"], workspace="default")
                out["after_exit"] = "still there"
            except grpc.RpcError as exc:
                out["after_exit"] = exc.code().name
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    adjective, noun = result["name"].split("-")
    assert adjective and noun
    assert result["exec"] == [0, "hello\n"]
    assert result["timeout_exit"] == 124
    assert result["after_exit"] == "NOT_FOUND"


def test_sdk_unimplemented_rpc_answers_unimplemented(gateway, sdk):
    result = sdk(
        """
        import json, grpc
        from openshell import SandboxClient
        from openshell._proto import openshell_pb2

        # ListWorkspaceMembers: in the SDK's service, not in ours (one mTLS operator, no roles)
        with SandboxClient.from_active_cluster() as client:
            try:
                client._stub.ListWorkspaceMembers(openshell_pb2.ListWorkspaceMembersRequest(page_size=1))
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
        print(json.dumps({"code": code}))
        """,
        env=gateway.env,
    )
    assert result["code"] == "UNIMPLEMENTED"
