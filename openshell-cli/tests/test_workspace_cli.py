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
