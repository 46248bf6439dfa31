"""Providers through the published SDK's generated stub (the 0.1.5 SDK has no
provider helpers besides operator credential export): CRUD, redaction, type
changes, attach/detach on a running sandbox (see docs/sdk-compat.md)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(900)

SECRET = "sk-ant-sdk-compat-REAL-0123456789"

# Shared prelude of the SDK scripts: the SDK's own channel and generated stub.
PRELUDE = """
import json, grpc
from openshell import SandboxClient
from openshell._proto import datamodel_pb2 as dm, openshell_pb2 as pb, openshell_pb2_grpc

client = SandboxClient.from_active_cluster(timeout=60)
stub = openshell_pb2_grpc.OpenShellStub(client._channel)
ws = dm.WorkspaceSelector(workspace="default")

def code(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as exc:
        return [exc.code().name, exc.details()]
"""


def test_sdk_provider_crud_redacts_and_keeps_the_type(gateway, sdk):
    result = sdk(
        PRELUDE
        + f"""
out = {{}}
p = dm.Provider(metadata=dm.ObjectMeta(name="sdk-claude"), type="claude-code",
                credentials={{"CLAUDE_CODE_OAUTH_TOKEN": "{SECRET}"}}, config={{"note": "x"}})
created = stub.CreateProvider(pb.CreateProviderRequest(provider=p, workspace_scope=ws)).provider
out["created"] = [created.type, dict(created.credentials)]
got = stub.GetProvider(pb.GetProviderRequest(name="sdk-claude", workspace_scope=ws)).provider
out["got"] = [got.type, dict(got.credentials), dict(got.config)]
out["retype"] = code(lambda: stub.UpdateProvider(pb.UpdateProviderRequest(
    provider=dm.Provider(metadata=dm.ObjectMeta(name="sdk-claude"), type="codex"), workspace_scope=ws)))
kept = stub.UpdateProvider(pb.UpdateProviderRequest(
    provider=dm.Provider(metadata=dm.ObjectMeta(name="sdk-claude")), workspace_scope=ws)).provider
out["kept"] = [kept.type, dict(kept.credentials), dict(kept.config)]
listed = stub.ListProviders(pb.ListProvidersRequest(workspace_scope=ws)).providers
out["listed"] = {{x.metadata.name: dict(x.credentials) for x in listed}}
out["unknown_type"] = code(lambda: stub.CreateProvider(pb.CreateProviderRequest(
    provider=dm.Provider(metadata=dm.ObjectMeta(name="x"), type="nope", credentials={{"A": "1"}}), workspace_scope=ws)))
out["deleted"] = stub.DeleteProvider(pb.DeleteProviderRequest(name="sdk-claude", workspace_scope=ws)).outcome
out["leak"] = "{SECRET}" in json.dumps(out)
print(json.dumps(out))
""",
        env=gateway.env,
    )
    assert result["created"] == ["claude-code", {"CLAUDE_CODE_OAUTH_TOKEN": "REDACTED"}]
    assert result["got"] == ["claude-code", {"CLAUDE_CODE_OAUTH_TOKEN": "REDACTED"}, {"note": "x"}]
    assert result["retype"][0] == "INVALID_ARGUMENT" and "type cannot be changed" in result["retype"][1]
    assert result["kept"] == result["got"]
    assert result["listed"]["sdk-claude"] == {"CLAUDE_CODE_OAUTH_TOKEN": "REDACTED"}
    assert result["unknown_type"][0] == "INVALID_ARGUMENT" and "unknown provider type 'nope'" in result["unknown_type"][1]
    assert result["deleted"] == 1  # DELETION_OUTCOME_COMPLETED
    assert result["leak"] is False


def test_sdk_attach_and_detach_change_later_exec_launches(gateway, sdk):
    result = sdk(
        PRELUDE
        + f"""
out = {{}}
for name, typ, creds in (("sdk-gh", "github", {{"GITHUB_TOKEN": "ghp-{SECRET}"}}),
                         ("sdk-codex", "codex", {{"CODEX_API_KEY": "{SECRET}"}})):
    stub.CreateProvider(pb.CreateProviderRequest(
        provider=dm.Provider(metadata=dm.ObjectMeta(name=name), type=typ, credentials=creds), workspace_scope=ws))
out["unknown"] = code(lambda: client.create(workspace="default", name="sdk-prov-bad", spec=pb.SandboxSpec(providers=["ghost"])))
ref = client.create(workspace="default", name="sdk-prov", spec=pb.SandboxSpec(providers=["sdk-gh"]))
client.wait_ready("sdk-prov", workspace="default", timeout_seconds=180)

def env():
    res = client.exec("sdk-prov", ["sh", "-c", "env | grep -E '^(GITHUB_TOKEN|CODEX_API_KEY)=' | sort"], workspace="default")
    return res.stdout.splitlines()

out["before"] = env()
att = stub.AttachSandboxProvider(pb.AttachSandboxProviderRequest(sandbox="sdk-prov", provider="sdk-codex", workspace_scope=ws))
out["attach"] = [att.attached, list(att.sandbox.spec.providers)]
out["after_attach"] = env()
listed = stub.ListSandboxProviders(pb.ListSandboxProvidersRequest(sandbox="sdk-prov", workspace_scope=ws))
out["listed"] = [[x.metadata.name, dict(x.credentials)] for x in listed.providers]
det = stub.DetachSandboxProvider(pb.DetachSandboxProviderRequest(sandbox="sdk-prov", provider="sdk-gh", workspace_scope=ws))
out["detach"] = [det.detached, list(det.sandbox.spec.providers)]
out["after_detach"] = env()
out["attach_unknown"] = code(lambda: stub.AttachSandboxProvider(pb.AttachSandboxProviderRequest(
    sandbox="sdk-prov", provider="ghost", workspace_scope=ws)))
got = stub.GetSandbox(pb.GetSandboxRequest(name="sdk-prov", workspace_scope=ws)).sandbox
out["spec_leak"] = "{SECRET}" in str(got)
client.delete("sdk-prov", workspace="default")
for name in ("sdk-gh", "sdk-codex"):
    stub.DeleteProvider(pb.DeleteProviderRequest(name=name, workspace_scope=ws))
print(json.dumps(out))
""",
        env=gateway.env,
    )
    assert result["unknown"][0] == "INVALID_ARGUMENT" and "provider 'ghost' not found" in result["unknown"][1]
    assert result["before"] == ["GITHUB_TOKEN=openshell:resolve:env:GITHUB_TOKEN"]
    assert result["attach"] == [True, ["sdk-gh", "sdk-codex"]]
    assert result["after_attach"] == ["CODEX_API_KEY=openshell:resolve:env:CODEX_API_KEY", "GITHUB_TOKEN=openshell:resolve:env:GITHUB_TOKEN"]
    assert result["listed"] == [["sdk-gh", {"GITHUB_TOKEN": "REDACTED"}], ["sdk-codex", {"CODEX_API_KEY": "REDACTED"}]]
    assert result["detach"] == [True, ["sdk-codex"]]
    assert result["after_detach"] == ["CODEX_API_KEY=openshell:resolve:env:CODEX_API_KEY"]
    assert result["attach_unknown"][0] == "NOT_FOUND"
    assert result["spec_leak"] is False
    # Nothing of the values in the gateway's files (the sandbox spec holds names only).
    for path in gateway.state_dir.glob("gateway.db*"):
        assert SECRET.encode() not in path.read_bytes(), path


def test_sdk_agent_provider_types_give_a_sandbox_their_variables(gateway, sdk):
    """The agent provider types users expect, created through the SDK's stub and
    attached at create: each variable is in the sandbox as a placeholder, never the
    value; ListProviders over all workspaces lists them with their workspace."""
    kinds = {
        "sdk-t-claude": ("claude", "ANTHROPIC_API_KEY"),
        "sdk-t-opencode": ("opencode", "OPENCODE_API_KEY"),
        "sdk-t-copilot": ("copilot", "COPILOT_GITHUB_TOKEN"),
        "sdk-t-gcloud": ("google-cloud", "GOOGLE_API_KEY"),
    }
    result = sdk(
        PRELUDE
        + f"""
out = {{}}
kinds = {kinds!r}
for name, (typ, var) in kinds.items():
    stub.CreateProvider(pb.CreateProviderRequest(
        provider=dm.Provider(metadata=dm.ObjectMeta(name=name), type=typ, credentials={{var: "{SECRET}"}}), workspace_scope=ws))
try:
    client.create(workspace="default", name="sdk-types", spec=pb.SandboxSpec(providers=sorted(kinds)))
    client.wait_ready("sdk-types", workspace="default", timeout_seconds=180)
    pattern = "|".join(var for _, var in kinds.values())
    res = client.exec("sdk-types", ["sh", "-c", f"env | grep -E '^({{pattern}})=' | sort"], workspace="default")
    out["env"] = res.stdout.splitlines()
    every = stub.ListProviders(pb.ListProvidersRequest(workspace_scope=dm.WorkspaceSelector(all_workspaces=dm.AllWorkspaces())))
    out["all"] = sorted([p.metadata.workspace, p.metadata.name, p.type] for p in every.providers if p.metadata.name in kinds)
finally:
    client.delete("sdk-types", workspace="default", allow_missing=True)
    for name in kinds:
        stub.DeleteProvider(pb.DeleteProviderRequest(name=name, workspace_scope=ws, allow_missing=True))
print(json.dumps(out))
""",
        env=gateway.env,
    )
    assert result["env"] == sorted(f"{var}=openshell:resolve:env:{var}" for _, var in kinds.values())
    assert result["all"] == sorted(["default", name, typ] for name, (typ, _) in kinds.items())
