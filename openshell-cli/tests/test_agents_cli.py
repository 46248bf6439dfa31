"""``openshell agents list|install|policy`` and the agent checks of ``sandbox create`` (issue 6).

These run the real console script against the first-party agent plugins
installed in this environment; none of them contacts a gateway (the agent is
checked before any gateway is started or asked).
"""

from __future__ import annotations

import json
import os
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
    assert rows["opencode"]["installed"] is False and rows["opencode"]["program"] == "no"
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
    proc = run("sandbox", "create", "--", "opencode", tmp=tmp_path,
               OPENSHELL_AGENTS_ROOT=str(tmp_path / "none"), OPENSHELL_AGENTS_BIN_DIR=str(tmp_path / "nobin"))
    if proc.returncode == 0 or "is not installed" not in proc.stderr:
        pytest.skip("opencode is installed on this machine")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: agent 'opencode' is not installed here; run 'openshell agents install opencode'"
    assert not (tmp_path / "state" / "openshell").exists(), "no gateway may be started for a missing agent"


def test_help_has_examples(tmp_path):
    for args in (["agents", "install", "--help"], ["agents", "policy", "--help"], ["agents", "list", "--help"]):
        proc = run(*args, tmp=tmp_path)
        assert proc.returncode == 0 and "Example" in proc.stdout
