"""``openshell agents list|install|policy`` and the agent checks of ``sandbox create``.

These run the real console script against the first-party agent plugins
installed in this environment; none of them contacts a gateway (the agent is
checked before any gateway is started or asked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

OPENSHELL = str(Path(sys.executable).with_name("openshell"))


def run(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENSHELL_")}
    # Client files in a tmp dir: no gateway is configured, so nothing can reach one.
    base.update(XDG_CONFIG_HOME=str(tmp / "config"), XDG_STATE_HOME=str(tmp / "state"), **env)
    return subprocess.run([OPENSHELL, *args], capture_output=True, text=True, timeout=120, env=base)


@pytest.fixture(autouse=True)
def _need_first_party_agents():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="openshell.agents")}
    missing = {"claude", "codex", "opencode", "openclaw"} - names
    if missing:
        pytest.skip(f"first-party agent plugins not installed here: {sorted(missing)} (scripts/setup.sh installs them)")


def test_agents_list_json_shows_program_and_provider_status(tmp_path):
    proc = run("agents", "list", "-o", "json", tmp=tmp_path, OPENSHELL_AGENTS_ROOT=str(tmp_path / "none"))
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) >= {"claude", "codex", "opencode", "openclaw"}
    assert rows["claude"]["package"] == "npm:@anthropic-ai/claude-code"
    # openclaw needs Node.js >= 24.16, so CI machines (Node 20) never have it installed
    if shutil.which("openclaw", path="/usr/local/bin:/usr/bin:/bin") is None:
        assert rows["openclaw"]["installed"] is False and rows["openclaw"]["program"] == "no"
    assert rows["claude"]["installed"] is (shutil.which("claude", path="/usr/local/bin:/usr/bin:/bin") is not None)
    # no gateway configured: provider status comes from the environment
    assert rows["codex"]["provider_status"] == "openai:missing"


def test_agents_list_counts_a_credential_in_the_environment(tmp_path):
    proc = run("agents", "list", "-o", "json", tmp=tmp_path, OPENAI_API_KEY="sk-test-not-real")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["codex"]["provider_status"] == "openai:env"
    assert rows["openclaw"]["provider_status"] == "anthropic:missing,openai:env"


def test_agents_list_table_fits_80_columns(tmp_path):
    proc = run("agents", "list", tmp=tmp_path, COLUMNS="80")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0].split() == ["NAME", "STATUS", "PROGRAM", "PROVIDER_STATUS"]
    assert max(len(line.rstrip()) for line in proc.stdout.splitlines()) <= 80


def test_agents_policy_prints_the_fragment(tmp_path):
    proc = run("agents", "policy", "claude", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    rule = doc["network_policies"]["claude_agent"]
    assert {e["host"] for e in rule["endpoints"]} == {"api.anthropic.com", "console.anthropic.com"}
    assert rule["binaries"][0]["path"] == "/usr/local/bin/claude"
    as_json = json.loads(run("agents", "policy", "codex", "-o", "json", tmp=tmp_path).stdout)
    assert "codex_agent" in as_json["network_policies"]


def test_unknown_agent_is_one_line_listing_the_installed_ones(tmp_path):
    for args in (["agents", "policy", "nope"], ["agents", "install", "nope"], ["sandbox", "create", "--agent", "nope"]):
        proc = run(*args, tmp=tmp_path)
        assert proc.returncode == 1, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert "no agent plugin named 'nope'" in lines[0]
        assert "claude" in lines[0] and "codex" in lines[0]


def test_create_with_an_agent_whose_program_is_missing_says_how_to_install_it(tmp_path):
    if shutil.which("openclaw", path="/usr/local/bin:/usr/bin:/bin") is not None:
        pytest.skip("openclaw is installed on this machine")
    proc = run(
        "sandbox", "create", "--", "openclaw", tmp=tmp_path, OPENSHELL_AGENTS_ROOT=str(tmp_path / "none"), OPENSHELL_AGENTS_BIN_DIR=str(tmp_path / "nobin")
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: agent 'openclaw' is not installed here; run 'openshell agents install openclaw'"
    assert not (tmp_path / "state" / "openshell").exists(), "no gateway may be started for a missing agent"


def test_help_has_examples(tmp_path):
    for args in (["agents", "install", "--help"], ["agents", "policy", "--help"], ["agents", "list", "--help"]):
        proc = run(*args, tmp=tmp_path)
        assert proc.returncode == 0 and "Example" in proc.stdout


# --------------------------------------------------------------------------- plan_launch (in-process)


def _fake_agent():
    from openshell.plugin import Agent

    class FakeAgent(Agent):
        name = "fake"
        summary = "a fake agent"
        provider_types = ("anthropic",)
        inference_protocols = ("anthropic",)

        def argv(self, extra=()):
            return ["fake-agent", *extra]

        def detect(self):
            return True

        def policy_fragment(self):
            return {"fake_agent": {"endpoints": [{"host": "api.fake.example", "port": 443}], "binaries": [{"path": "/usr/local/bin/fake-agent"}]}}

        def inference_env(self, base_url):
            return {"FAKE_BASE_URL": base_url, "FAKE_MODE": "routed"}

        def home_files(self, base_url):
            return {".fake/config": f"url={base_url}\n"} if base_url else {}

    return FakeAgent


def test_plan_launch_routed_merges_env_files_and_warns_on_a_protocol_mismatch():
    from types import SimpleNamespace

    from openshell_cli.agent_flow import plan_launch

    route = SimpleNamespace(backend="openai", protocols=("openai",))
    launch = plan_launch(_fake_agent(), ["fake", "-p", "hi"], policy_text=None, user_env={"FAKE_MODE": "mine"}, routed=route)
    assert launch.argv == ["fake-agent", "-p", "hi"]
    assert launch.env == {"FAKE_BASE_URL": "https://inference.local", "FAKE_MODE": "mine"}  # the user's --env wins
    assert launch.home_files == {".fake/config": "url=https://inference.local\n"}
    assert "fake_agent" in launch.policy_yaml and "api.fake.example" in launch.shown_policy
    assert any(n.startswith("warning: agent fake speaks anthropic but the inference route (openai)") for n in launch.notes)


def test_plan_launch_without_a_route_sets_nothing_for_inference():
    from openshell_cli.agent_flow import plan_launch

    launch = plan_launch(_fake_agent(), ["fake"], policy_text="version: 1\n", user_env={}, routed=None)
    assert launch.env == {} and launch.home_files == {}
    assert not any("inference.local" in n for n in launch.notes)


def test_plan_launch_no_agent_policy_keeps_the_users_policy_only():
    from openshell_cli.agent_flow import plan_launch

    launch = plan_launch(_fake_agent(), ["fake"], policy_text="version: 1\n", user_env={}, routed=None, use_fragment=False)
    assert "fake_agent" not in launch.policy_yaml


def test_home_file_paths_may_not_escape_the_home(tmp_path):
    from openshell_cli.agent_flow import _safe_home_path
    from openshell_cli.errors import CliError

    assert _safe_home_path(".codex/config.toml") == "/sandbox/.codex/config.toml"
    for bad in ("/etc/passwd", "../x", "a/../../x", "a//b", "a\nb", ""):
        with pytest.raises(CliError):
            _safe_home_path(bad)


def test_agent_arguments_with_and_without_the_agents_own_name():
    from openshell_cli.agent_flow import plan_launch

    cls = _fake_agent()
    for command in (["fake-agent", "-p", "hi"], ["fake", "-p", "hi"], ["-p", "hi"]):
        assert plan_launch(cls, command, policy_text=None, user_env={}, routed=None).argv == ["fake-agent", "-p", "hi"]
