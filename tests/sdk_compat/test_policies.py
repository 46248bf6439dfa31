"""Structured policies through the published SDK (openshell==0.1.5): ``SandboxSpec.policy``
at create, ``UpdateConfig(policy=...)`` on a running sandbox, the policy in answers,
and validation errors as an SDK user sees them (docs/sdk-compat.md)."""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.timeout(900)

#: prepended to every script: imports and small helpers run in the SDK's venv
PRELUDE = textwrap.dedent(
    """
    import json, time
    from google.protobuf import json_format
    from openshell import GatewayError, SandboxClient
    from openshell._proto import datamodel_pb2, openshell_pb2, sandbox_pb2

    SCOPE = datamodel_pb2.WorkspaceSelector(workspace="default")

    def refused(call):
        try:
            call()
        except GatewayError as exc:
            return {
                "code": exc.code().name,
                "details": exc.details(),
                "violations": [[v.field, v.description] for v in exc.field_violations],
                "reason": exc.error_info.reason if exc.error_info else None,
            }
        return None

    def get_policy(client, name):
        req = openshell_pb2.GetSandboxRequest(name=name, workspace_scope=SCOPE)
        return json_format.MessageToDict(client._stub.GetSandbox(req).sandbox.spec.policy)

    def update(client, name, policy):
        return client._stub.UpdateConfig(openshell_pb2.UpdateConfigRequest(sandbox=name, workspace_scope=SCOPE, policy=policy))

    def wait_revision(client, name, version, timeout=120):
        # The supervisor reports a revision loaded or failed; poll until it leaves PENDING.
        deadline = time.monotonic() + timeout
        req = openshell_pb2.GetSandboxPolicyStatusRequest(sandbox=name, version=version, workspace_scope=SCOPE)
        while True:
            st = client._stub.GetSandboxPolicyStatus(req)
            if st.revision.status != openshell_pb2.POLICY_STATUS_PENDING or time.monotonic() > deadline:
                return openshell_pb2.PolicyStatus.Name(st.revision.status), st.revision.load_error

    def curl(client, name, url):
        res = client.exec(name, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", url], workspace="default", timeout_seconds=60)
        return res.stdout
    """
)


def run(sdk, gateway, body: str) -> dict:
    return sdk(PRELUDE + textwrap.dedent(body), env=gateway.env)


def test_sdk_creates_a_sandbox_with_a_structured_policy_that_is_enforced_and_returned(gateway, upstream, sdk):
    result = run(
        sdk,
        gateway,
        f"""
        NAME = "sdkpol-create"
        url = "http://{upstream.ip}:8080/"
        rule = sandbox_pb2.NetworkPolicyRule(
            name="curl to the test host",
            endpoints=[sandbox_pb2.NetworkEndpoint(host="{upstream.ip}", port=8080)],
            binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")],
        )
        policy = sandbox_pb2.SandboxPolicy(
            version=1,
            # incomplete: the baseline is added
            filesystem=sandbox_pb2.FilesystemPolicy(include_workdir=True, read_only=["/opt"]),
            landlock=sandbox_pb2.LandlockPolicy(compatibility="best_effort"),
            process=sandbox_pb2.ProcessPolicy(run_as_user="1234", run_as_group="1234"),
            network_policies={{"curl_up": rule}},
        )
        out = {{}}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            client.delete(NAME, workspace="default", allow_missing=True)
            try:
                client.create(workspace="default", name=NAME, spec=openshell_pb2.SandboxSpec(policy=policy))
                client.wait_ready(NAME, workspace="default", timeout_seconds=180)
                out["policy"] = get_policy(client, NAME)
                out["uid"] = client.exec(NAME, ["id", "-u"], workspace="default").stdout.strip()
                out["curl"] = curl(client, NAME, url)
                res = client.exec(NAME, ["python3", "-c", "import urllib.request as u; u.urlopen('" + url + "', timeout=20)"], workspace="default", timeout_seconds=60)
                out["python_exit"] = res.exit_code
                out["rev1"] = wait_revision(client, NAME, 1)
                st = client._stub.GetSandboxPolicyStatus(openshell_pb2.GetSandboxPolicyStatusRequest(sandbox=NAME, workspace_scope=SCOPE))
                out["rev1_policy_hosts"] = [e.host for e in st.revision.policy.network_policies["curl_up"].endpoints]
                out["current_policy_version"] = client.get(NAME, workspace="default").current_policy_version
            finally:
                client.delete(NAME, workspace="default", allow_missing=True)
        print(json.dumps(out))
        """,
    )
    policy = result["policy"]
    assert policy["version"] == 1
    assert policy["process"] == {"runAsUser": "1234", "runAsGroup": "1234"}
    assert policy["landlock"] == {"compatibility": "best_effort"}
    fs = policy["filesystem"]
    assert fs["includeWorkdir"] is True and "/opt" in fs["readOnly"] and "/usr" in fs["readOnly"]  # baseline added
    assert "/sandbox" in fs["readWrite"] and "/tmp" in fs["readWrite"]
    assert policy["networkPolicies"]["curl_up"]["name"] == "curl to the test host"
    assert policy["networkPolicies"]["curl_up"]["endpoints"] == [{"host": upstream.ip, "port": 8080, "enforcement": "NETWORK_ENFORCEMENT_MODE_ENFORCE"}]
    assert policy["networkPolicies"]["curl_up"]["binaries"] == [{"path": "/usr/bin/curl"}]
    # Enforced: the process runs as the policy's user; curl may connect, python may not.
    assert result["uid"] == "1234"
    assert result["curl"] == "200"
    assert result["python_exit"] != 0
    assert result["rev1"] == ["POLICY_STATUS_LOADED", ""]
    assert result["rev1_policy_hosts"] == [upstream.ip]
    assert result["current_policy_version"] == 1


def test_sdk_updates_a_running_sandbox_with_structured_policies(gateway, upstream, sdk):
    result = run(
        sdk,
        gateway,
        f"""
        NAME = "sdkpol-update"
        url = "http://{upstream.ip}:8080/"
        curl_rule = sandbox_pb2.NetworkPolicyRule(
            endpoints=[sandbox_pb2.NetworkEndpoint(host="{upstream.ip}", port=8080)],
            binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")],
        )
        initial = sandbox_pb2.SandboxPolicy(version=1, filesystem=sandbox_pb2.FilesystemPolicy(include_workdir=True, read_only=["/opt"]))
        out = {{}}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            client.delete(NAME, workspace="default", allow_missing=True)
            try:
                client.create(workspace="default", name=NAME, spec=openshell_pb2.SandboxSpec(policy=initial))
                client.wait_ready(NAME, workspace="default", timeout_seconds=180)
                out["curl_before"] = curl(client, NAME, url)

                # No filesystem section: the current one is kept; the revision loads.
                up = update(client, NAME, sandbox_pb2.SandboxPolicy(version=1, network_policies={{"curl_up": curl_rule}}))
                out["v2"] = [up.version, len(up.policy_hash)] + list(wait_revision(client, NAME, up.version))
                out["curl_after"] = curl(client, NAME, url)
                out["policy_v2"] = get_policy(client, NAME)
                out["current_v2"] = client.get(NAME, workspace="default").current_policy_version

                # An incomplete filesystem section (the baseline is not listed): the baseline is added, same as before.
                fs = sandbox_pb2.FilesystemPolicy(include_workdir=True, read_only=["/opt"])
                up = update(client, NAME, sandbox_pb2.SandboxPolicy(version=1, filesystem=fs, network_policies={{"curl_up": curl_rule}}))
                out["v3"] = [up.version] + list(wait_revision(client, NAME, up.version))

                # Removing or changing a filesystem path: refused, whatever else is wrong with it.
                bad = sandbox_pb2.FilesystemPolicy(include_workdir=True, read_only=["/opt/../srv"])
                out["changed"] = refused(lambda: update(client, NAME, sandbox_pb2.SandboxPolicy(version=1, filesystem=bad)))
                gone = sandbox_pb2.FilesystemPolicy(include_workdir=True)
                out["removed"] = refused(lambda: update(client, NAME, sandbox_pb2.SandboxPolicy(version=1, filesystem=gone)))
                # Another static section changed.
                ll = sandbox_pb2.LandlockPolicy(compatibility="hard_requirement")
                out["landlock"] = refused(lambda: update(client, NAME, sandbox_pb2.SandboxPolicy(version=1, landlock=ll)))
                # A field of the SDK our policy model does not have.
                ep = sandbox_pb2.NetworkEndpoint(host="{upstream.ip}", port=8080, credential_binding=sandbox_pb2.NetworkCredentialBinding(provider="x"))
                rule = sandbox_pb2.NetworkPolicyRule(endpoints=[ep], binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")])
                out["unsupported"] = refused(lambda: update(client, NAME, sandbox_pb2.SandboxPolicy(version=1, network_policies={{"r": rule}})))

                lst = client._stub.ListSandboxPolicies(openshell_pb2.ListSandboxPoliciesRequest(sandbox=NAME, workspace_scope=SCOPE))
                out["versions"] = [r.version for r in lst.revisions]
                out["curl_end"] = curl(client, NAME, url)
            finally:
                client.delete(NAME, workspace="default", allow_missing=True)
        print(json.dumps(out))
        """,
    )
    assert result["curl_before"] == "403"
    assert result["v2"] == [2, 64, "POLICY_STATUS_LOADED", ""]
    assert result["curl_after"] == "200"
    assert "/opt" in result["policy_v2"]["filesystem"]["readOnly"]  # kept
    assert list(result["policy_v2"]["networkPolicies"]) == ["curl_up"]
    assert result["current_v2"] == 2
    assert result["v3"] == [3, "POLICY_STATUS_LOADED", ""]

    for key in ("changed", "removed"):
        err = result[key]
        assert err["code"] == "INVALID_ARGUMENT", key
        assert "cannot be removed" in err["details"] and '"/opt"' in err["details"], err
        assert err["violations"][0][0] == "policy.filesystem.read_only" and "cannot be removed" in err["violations"][0][1]
        assert err["reason"] == "INVALID_ARGUMENT"
    err = result["landlock"]
    assert err["code"] == "INVALID_ARGUMENT" and "recreate the sandbox" in err["details"]
    assert err["violations"][0][0] == "policy.landlock.compatibility"
    err = result["unsupported"]
    assert err["code"] == "INVALID_ARGUMENT"
    assert err["violations"][0][0] == "policy.network_policies.r.endpoints[0].credential_binding"
    # Nothing refused was stored; the policy in force is unchanged.
    assert result["versions"] == [3, 2, 1]
    assert result["curl_end"] == "200"


def test_sdk_policy_validation_errors_name_the_field_and_the_problem(gateway, sdk):
    result = run(
        sdk,
        gateway,
        """
        def rule(**endpoint):
            return sandbox_pb2.NetworkPolicyRule(
                endpoints=[sandbox_pb2.NetworkEndpoint(host="api.example.test", port=443, **endpoint)],
                binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")],
            )

        full = sandbox_pb2.NETWORK_ACCESS_PRESET_FULL
        policies = {
            "root": sandbox_pb2.SandboxPolicy(version=1, process=sandbox_pb2.ProcessPolicy(run_as_user="root")),
            "dotdot": sandbox_pb2.SandboxPolicy(version=1, filesystem=sandbox_pb2.FilesystemPolicy(include_workdir=True, read_only=["/usr/../etc"])),
            "slash": sandbox_pb2.SandboxPolicy(version=1, filesystem=sandbox_pb2.FilesystemPolicy(read_write=["/"])),
            "conflict": sandbox_pb2.SandboxPolicy(version=1, network_policies={"alpha": rule(protocol="rest", access=full), "beta": rule()}),
            "middleware": sandbox_pb2.SandboxPolicy(version=1, network_middlewares={"m": sandbox_pb2.NetworkMiddlewareConfig(name="m")}),
            "terminate": sandbox_pb2.SandboxPolicy(version=1, network_policies={"r": rule(tls=sandbox_pb2.NETWORK_TLS_MODE_TERMINATE)}),
            "version": sandbox_pb2.SandboxPolicy(version=2),
            "several": sandbox_pb2.SandboxPolicy(
                version=1,
                process=sandbox_pb2.ProcessPolicy(run_as_user="0"),
                filesystem=sandbox_pb2.FilesystemPolicy(read_write=["/"]),
            ),
        }
        out = {}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            for key, policy in policies.items():
                name = "sdkpol-invalid-" + key
                out[key] = refused(lambda: client.create(workspace="default", name=name, spec=openshell_pb2.SandboxSpec(policy=policy)))
                out[key]["created"] = refused(lambda: client.get(name, workspace="default"))["code"]
        print(json.dumps(out))
        """,
    )
    expected = {
        "root": ("spec.policy.process.run_as_user", "root"),
        "dotdot": ("spec.policy.filesystem.read_only[0]", '".."'),
        "slash": ("spec.policy.filesystem.read_write[0]", "too broad"),
        "conflict": ("spec.policy.network_policies.beta.endpoints[0]", "network_policies.alpha.endpoints[0]"),
        "middleware": ("spec.policy.network_middlewares", "not supported"),
        "terminate": ("spec.policy.network_policies.r.endpoints[0].tls", "NETWORK_TLS_MODE_TERMINATE"),
        "version": ("spec.policy.version", "version"),
        "several": ("spec.policy.filesystem.read_write[0]", "too broad"),
    }
    for key, (field, words) in expected.items():
        err = result[key]
        assert err["code"] == "INVALID_ARGUMENT", (key, err)
        assert err["details"].startswith(field + ":") and words in err["details"], (key, err)
        assert err["violations"][0] == [field, err["details"].split(": ", 1)[1]], (key, err)
        assert err["reason"] == "INVALID_ARGUMENT"
        assert err["created"] == "NOT_FOUND", key  # nothing was stored
    conflict = result["conflict"]["details"]
    assert "api.example.test:443" in conflict and "protocol" in conflict
    # Every problem is a field violation, not only the first.
    assert [v[0] for v in result["several"]["violations"]] == ["spec.policy.filesystem.read_write[0]", "spec.policy.process.run_as_user"]
