"""Errors with rich details, GetGatewayInfo, GetCurrentUser and an unscoped CreateSandbox
through the published SDK (openshell==0.1.5; docs/sdk-compat.md)."""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.timeout(900)

PRELUDE = textwrap.dedent(
    """
    import json
    from openshell import GatewayError, SandboxClient
    from openshell._proto import datamodel_pb2, openshell_pb2, sandbox_pb2

    SCOPE = datamodel_pb2.WorkspaceSelector(workspace="default")

    def refused(call):
        try:
            call()
        except GatewayError as exc:
            info = exc.error_info
            return {
                "code": exc.code().name,
                "details": exc.details(),
                "violations": [[v.field, v.description] for v in exc.field_violations],
                "info": [info.reason, info.domain, info.metadata] if info else None,
                "raw_code": exc.raw_status.code if exc.raw_status else None,
            }
        return None
    """
)


def run(sdk, gateway, body: str) -> dict:
    return sdk(PRELUDE + textwrap.dedent(body), env=gateway.env)


def test_sdk_errors_carry_field_violations_and_error_info(gateway, sdk):
    result = run(
        sdk,
        gateway,
        """
        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            out["not_found"] = refused(lambda: client.get("sdk-no-such-sandbox", workspace="default"))
            out["bad_name"] = refused(lambda: client.create(workspace="default", name="Bad_Name"))
            out["bad_env"] = refused(lambda: client.create(workspace="default", name="sdk-env", spec=openshell_pb2.SandboxSpec(environment={"1BAD": "x"})))
            out["unknown_revision"] = refused(
                lambda: client._stub.GetSandboxPolicyStatus(openshell_pb2.GetSandboxPolicyStatusRequest(sandbox="sdk-no-such-sandbox", version=7, workspace_scope=SCOPE))
            )
            out["unimplemented"] = refused(lambda: client._stub.GetDraftPolicy(openshell_pb2.GetDraftPolicyRequest()))
        print(json.dumps(out))
        """,
    )
    err = result["not_found"]
    assert err["code"] == "NOT_FOUND" and "sandbox 'sdk-no-such-sandbox' not found" in err["details"]
    assert err["info"] == ["SANDBOX_NOT_FOUND", "openshell.gateway", {}]
    assert err["violations"] == [] and err["raw_code"] == 5

    err = result["bad_name"]
    assert err["code"] == "INVALID_ARGUMENT" and err["raw_code"] == 3
    assert len(err["violations"]) == 1 and err["violations"][0][0] == "name" and "not a valid sandbox name" in err["violations"][0][1]
    assert err["info"] == ["INVALID_ARGUMENT", "openshell.gateway", {"field": "name"}]

    err = result["bad_env"]
    assert err["violations"][0][0] == "spec.environment.1BAD"

    # The rich status is kept only when it matches the call's status: it does for every error.
    assert result["unknown_revision"]["info"][0] == "SANDBOX_NOT_FOUND"
    # An RPC we do not implement answers UNIMPLEMENTED without details.
    assert result["unimplemented"]["code"] == "UNIMPLEMENTED" and result["unimplemented"]["info"] is None


def test_sdk_gateway_info_and_current_user(gateway, sdk):
    from openshell import __version__
    from openshell.gateway.tls import USER_CN

    result = run(
        sdk,
        gateway,
        """
        from google.protobuf import json_format

        with SandboxClient.from_active_cluster(timeout=60) as client:
            info = client._stub.GetGatewayInfo(openshell_pb2.GetGatewayInfoRequest())
            user = client._stub.GetCurrentUser(openshell_pb2.GetCurrentUserRequest())
            health = client.health()
        print(json.dumps({
            "info": json_format.MessageToDict(info),
            "user": json_format.MessageToDict(user),
            "health_version": health.version,
        }))
        """,
    )
    info = result["info"]
    assert info["status"] == "SERVICE_STATUS_HEALTHY"
    assert info["gatewayVersion"] == __version__ == result["health_version"]
    [driver] = info["computeDrivers"]
    assert driver["name"] == "local" and driver["capabilities"]["driverName"] == "local"
    caps = driver["capabilities"]["resourceCapabilities"]
    assert caps["cpu"] == {"limitSupported": True} and caps["memory"] == {"limitSupported": True}
    assert result["user"] == {"subject": f"CN={USER_CN}", "displayName": USER_CN, "identityProvider": "mtls"}


def test_sdk_create_without_a_workspace_scope_uses_the_default_workspace(gateway, sdk):
    # The SDK always sends a scope; a bare request (another client, or the SDK's
    # stub used directly) gets the default workspace, as the SDK assumes.
    result = run(
        sdk,
        gateway,
        """
        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            sb = client._stub.CreateSandbox(openshell_pb2.CreateSandboxRequest()).sandbox
            try:
                out["created"] = [sb.metadata.workspace, bool(sb.metadata.name), bool(sb.metadata.id)]
                out["policy_version"] = sb.spec.policy.version
                out["got"] = client.get(sb.metadata.name, workspace="default").id == sb.metadata.id
            finally:
                out["deleted"] = client.delete(sb.metadata.name, workspace="default").outcome.name
        print(json.dumps(out))
        """,
    )
    assert result["created"] == ["default", True, True]
    assert result["policy_version"] == 1  # the default policy, returned structured
    assert result["got"] is True
    assert result["deleted"] == "COMPLETED"
