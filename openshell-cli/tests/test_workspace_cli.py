"""``openshell workspace create|list|delete`` against a real background gateway on a free loopback port."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from openshell.client.sdk import OpenShellClient
from openshell_cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def gateway(tmp_path, monkeypatch, free_port, kill_gateways):
    """A running gateway under XDG dirs in tmp_path; killed at the end even on failure."""
    state_home = tmp_path / "state"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    monkeypatch.delenv("OPENSHELL_STATE_DIR", raising=False)
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    try:
        res = run("gateway", "start", "--port", str(free_port()))
        assert res.exit_code == 0, res.output
        yield state_home
    finally:
        kill_gateways(state_home)


def test_workspace_create_list_delete_and_errors(gateway):
    res = run("workspace", "create", "team-a", "--label", "tier=dev")
    assert res.exit_code == 0 and "workspace team-a created" in res.stderr
    listed = json.loads(run("workspace", "list", "-o", "json").stdout)
    assert [(w["name"], w["labels"]) for w in listed] == [("default", {}), ("team-a", {"tier": "dev"})]
    assert "team-a" in run("workspace", "list").stdout
    assert [w["name"] for w in json.loads(run("workspace", "list", "--selector", "tier=dev", "-o", "json").stdout)] == ["team-a"]

    res = run("workspace", "create", "Team_A")
    assert res.exit_code == 1 and "name: 'Team_A' is not a valid workspace name" in res.stderr
    res = run("workspace", "create", "x", "--label", "novalue")
    assert res.exit_code == 1 and "--label 'novalue' is not KEY=VALUE" in res.stderr
    res = run("workspace", "delete", "default")
    assert res.exit_code == 1 and "workspace 'default' cannot be deleted" in res.stderr and "Traceback" not in res.output

    # A provider in the workspace keeps it (the CLI's provider commands address 'default', so the client does it).
    with OpenShellClient.from_config(workspace="team-a") as client:
        client.create_provider("p", "generic", {"TOKEN": "x"})
    res = run("workspace", "delete", "team-a")
    assert res.exit_code == 1 and "workspace 'team-a' is not empty (providers p); delete them first" in res.stderr
    with OpenShellClient.from_config(workspace="team-a") as client:
        client.delete_provider("p")
    res = run("workspace", "delete", "team-a")
    assert res.exit_code == 0 and "workspace team-a deleted" in res.stderr
    res = run("workspace", "delete", "team-a")
    assert res.exit_code == 1 and "workspace 'team-a' not found" in res.stderr
    assert "did not exist" in run("workspace", "delete", "team-a", "--allow-missing").stderr


def test_workspace_option_scopes_providers_templates_and_sandboxes(gateway, monkeypatch):
    assert run("workspace", "create", "team-b").exit_code == 0
    res = run("provider", "create", "--workspace", "team-b", "--name", "pb", "--type", "generic", "--credential", "TOKEN=x")
    assert res.exit_code == 0, res.output
    res = run("template", "create", "tb", "--workspace", "team-b", "--env", "A=1")
    assert res.exit_code == 0, res.output
    # In team-b, and only there.
    assert [p["name"] for p in json.loads(run("provider", "list", "--workspace", "team-b", "-o", "json").stdout)] == ["pb"]
    assert [p["name"] for p in json.loads(run("provider", "list", "-o", "json").stdout)] == []
    assert run("provider", "get", "pb").exit_code == 1
    assert run("provider", "get", "pb", "--workspace", "team-b").exit_code == 0
    assert [t["name"] for t in json.loads(run("template", "list", "--workspace", "team-b", "-o", "json").stdout)] == ["tb"]
    assert json.loads(run("template", "list", "-o", "json").stdout) == []
    # $OPENSHELL_WORKSPACE does the same as --workspace.
    monkeypatch.setenv("OPENSHELL_WORKSPACE", "team-b")
    assert run("template", "get", "tb").exit_code == 0
    assert json.loads(run("sandbox", "list", "-o", "json").stdout) == []
    monkeypatch.delenv("OPENSHELL_WORKSPACE")
    # An unknown workspace is named in the error.
    res = run("provider", "list", "--workspace", "nope")
    assert res.exit_code == 1 and "workspace 'nope' not found" in res.stderr
    res = run("workspace", "delete", "team-b")
    assert res.exit_code == 1 and "providers pb" in res.stderr and "templates tb" in res.stderr
    assert run("provider", "delete", "pb", "--workspace", "team-b").exit_code == 0
    assert run("template", "delete", "tb", "--workspace", "team-b").exit_code == 0
    assert run("workspace", "delete", "team-b").exit_code == 0
