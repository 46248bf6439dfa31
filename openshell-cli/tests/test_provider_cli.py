"""``openshell provider …`` and ``openshell inference set|get|backends`` against a real
background gateway on a free loopback port."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from openshell.plugin import Agent
from openshell_cli.main import cli

SECRET = "sk-cli-test-SECRET-42"


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def gateway(tmp_path, monkeypatch, free_port, kill_gateways):
    """A running gateway under XDG dirs in tmp_path; killed at the end even on failure."""
    state_home = tmp_path / "state"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    monkeypatch.delenv("OPENSHELL_STATE_DIR", raising=False)
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    try:
        res = run("gateway", "start", "--port", str(free_port()))
        assert res.exit_code == 0, res.output
        yield state_home
    finally:
        kill_gateways(state_home)


def test_types_lists_core_types_offline():
    res = run("provider", "types", "-o", "json")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["anthropic"]["env_vars"] == "ANTHROPIC_API_KEY" and "api.github.com" in rows["github"]["hosts"]


def test_create_needs_exactly_one_source_and_a_known_type():
    assert "give either --from-existing or --credential" in run("provider", "create", "--name", "x", "--type", "openai").stderr
    res = run("provider", "create", "--name", "x", "--type", "nope", "--credential", "A=1")
    assert res.exit_code == 1 and "unknown provider type 'nope'" in res.stderr
    res = run("provider", "create", "--name", "x", "--type", "openai", "--from-existing", env={"OPENAI_API_KEY": ""})
    assert res.exit_code == 1 and "none of OPENAI_API_KEY is set" in res.stderr


def test_crud_never_prints_the_value(gateway):
    res = run("provider", "create", "--name", "work", "--type", "anthropic", "--from-existing", env={"ANTHROPIC_API_KEY": SECRET})
    assert res.exit_code == 0, res.output
    assert "provider work created (anthropic: ANTHROPIC_API_KEY)" in res.stderr
    for args in (["provider", "list"], ["provider", "list", "-o", "json"], ["provider", "get", "work"], ["provider", "get", "work", "-o", "yaml"]):
        out = run(*args)
        assert out.exit_code == 0 and SECRET not in out.output
    assert "ANTHROPIC_API_KEY=<redacted>" in run("provider", "get", "work").stdout
    assert json.loads(run("provider", "list", "-o", "json").stdout) == [
        {"name": "work", "type": "anthropic", "credentials": ["ANTHROPIC_API_KEY"], "config": {}, "labels": {}, "workspace": "default"}
    ]
    res = run(
        "provider", "create", "--name", "ci", "--type", "generic", "--credential", "API_TOKEN", "--config", "hosts=api.example.test", env={"API_TOKEN": "t"}
    )
    assert res.exit_code == 0, res.output
    res = run("provider", "update", "ci", "--credential", "OTHER=2", "--remove-config", "hosts")
    assert res.exit_code == 0 and "API_TOKEN, OTHER" in res.stderr
    assert run("provider", "delete", "ci", "work").exit_code == 0
    res = run("provider", "get", "work")
    assert res.exit_code == 1 and "provider 'work' not found; see 'openshell provider list'" in res.stderr


def test_inference_set_get_and_errors(gateway):
    res = run("inference", "get")
    assert res.exit_code == 1 and "no inference route is set" in res.stderr
    res = run("inference", "set", "--backend", "nope", "--model", "m")
    assert res.exit_code == 1 and "inference backend 'nope' is not installed" in res.stderr
    res = run("inference", "set", "--backend", "openai", "--model", "m", "--base-url", "ftp://x")
    assert res.exit_code == 1 and "route.base_url" in res.stderr
    res = run("inference", "set", "--backend", "openai", "--model", "gpt-x", "--base-url", "http://127.0.0.1:9/v1")
    assert res.exit_code == 0, res.output
    got = json.loads(run("inference", "get", "-o", "json").stdout)
    assert got["backend"] == "openai" and got["model"] == "gpt-x" and got["protocols"] == ["openai"]


def test_inference_set_and_get_address_the_workspace_named(gateway):
    """Routes are kept per workspace; its provider is looked up in the same workspace."""
    assert run("workspace", "create", "team-a").exit_code == 0
    res = run("provider", "create", "--workspace", "team-a", "--name", "tinf", "--type", "openai", "--credential", "OPENAI_API_KEY=x")
    assert res.exit_code == 0, res.output
    res = run(
        "inference", "set", "--workspace", "team-a", "--backend", "openai", "--model", "team-m", "--base-url", "http://127.0.0.1:9/v1", "--provider", "tinf"
    )
    assert res.exit_code == 0, res.output
    got = json.loads(run("inference", "get", "-o", "json", env={"OPENSHELL_WORKSPACE": "team-a"}).stdout)
    assert (got["model"], got["provider"]) == ("team-m", "tinf")
    res = run("inference", "get")  # the default workspace has none
    assert res.exit_code == 1 and "no inference route is set;" in res.stderr
    res = run("inference", "get", "--workspace", "team-b")
    assert res.exit_code == 1 and "workspace" in res.stderr and "team-b" in res.stderr


class NeedsKeys(Agent):
    """An agent plugin class as the agent engineer writes them: it needs two provider types."""

    name = "needskeys"
    summary = "test agent"
    provider_types = ("anthropic", "github")

    def argv(self, extra=()):
        return ["true", *extra]


def test_auto_providers_create_from_env_and_warn_about_missing(gateway, monkeypatch, capsys):
    from openshell.client.sdk import OpenShellClient
    from openshell_cli.commands.provider import apply_auto_providers

    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with OpenShellClient.from_config() as client:
        attach = apply_auto_providers(client, NeedsKeys, [])
        assert attach == ["anthropic"]
        assert [p.name for p in client.list_providers()] == ["anthropic"]
        again = apply_auto_providers(client, NeedsKeys, [])  # existing provider reused, nothing created
        assert again == ["anthropic"] and len(client.list_providers()) == 1
    err = capsys.readouterr().err
    assert "provider anthropic created from your environment (ANTHROPIC_API_KEY)" in err
    assert "no 'github' provider" in err and SECRET not in err


def test_backends_table_shows_protocols_and_default_urls():
    out = run("inference", "backends").stdout
    assert "BASE_URL" in out and "https://api.anthropic.com/v1" in out
    res = run("inference", "backends", "no-such-backend")
    assert res.exit_code == 1 and "inference backend 'no-such-backend' is not installed" in res.stderr


def test_types_show_per_variable_hosts_of_bundling_types():
    rows = {r["name"]: r for r in json.loads(run("provider", "types", "-o", "json").stdout)}
    assert "api.anthropic.com" in rows["opencode"]["hosts"] and "openrouter.ai" in rows["opencode"]["hosts"]
    assert rows["claude-code"]["env_vars"] == "ANTHROPIC_API_KEY,CLAUDE_CODE_OAUTH_TOKEN,ANTHROPIC_AUTH_TOKEN"


def _exec_echo_token(sandbox: str) -> str:
    """``openshell sandbox exec`` needs real file descriptors: run it as a process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    argv = [str(Path(sys.executable).with_name("openshell")), "sandbox", "exec", sandbox, "--", "sh", "-c", "echo ${GITHUB_TOKEN:-unset}"]
    proc = subprocess.run(argv, env=dict(os.environ), capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip()


def test_attach_and_detach_on_a_running_sandbox(gateway):
    import os

    if os.geteuid() != 0:
        pytest.skip("sandboxes need root")
    assert run("provider", "create", "--name", "gh", "--type", "github", "--credential", f"GITHUB_TOKEN={SECRET}").exit_code == 0
    res = run("provider", "attach", "gh", "--sandbox", "nope")
    assert res.exit_code == 1 and "sandbox 'nope' not found" in res.stderr
    assert run("sandbox", "create", "--name", "att", "-d").exit_code == 0
    try:
        res = run("provider", "attach", "gh", "--sandbox", "att")
        assert res.exit_code == 0 and "provider gh attached to sandbox att" in res.stderr
        assert _exec_echo_token("att") == "openshell:resolve:env:GITHUB_TOKEN"
        res = run("provider", "detach", "gh", "--sandbox", "att")
        assert res.exit_code == 0 and "provider gh detached from sandbox att" in res.stderr
        assert _exec_echo_token("att") == "unset"
        assert "was not attached" in run("provider", "detach", "gh", "--sandbox", "att").stderr
    finally:
        run("sandbox", "delete", "att")
