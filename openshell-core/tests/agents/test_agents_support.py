"""openshell.agents: policy-fragment merging, agent resolution by argv[0], npm installs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from openshell.agents import (
    NpmAgent,
    NpmInstallError,
    UnknownAgent,
    merge_fragment,
    npm_install,
    resolve_agent,
)
from openshell.policy import PolicyError


class DemoAgent(NpmAgent):
    name = "demo"
    summary = "demo"
    npm_package = "@openai/codex"
    npm_version = "0.171.0"
    executable = "codex"
    api_hosts = ("api.demo.example",)


class FakeRegistry:
    """Stands in for the plugin registry: resolve_agent only asks it for classes."""

    def __init__(self, **classes: type) -> None:
        self._classes = classes

    def classes(self, kind: str) -> dict[str, type]:
        assert kind == "agents"
        return dict(self._classes)


# --------------------------------------------------------------------------- merge


def test_fragment_is_added_to_the_default_policy():
    merged = merge_fragment(None, DemoAgent().policy_fragment())
    assert merged.added == ["demo_agent"] and merged.kept == []
    (rule,) = merged.policy.network
    assert rule.endpoints[0].host == "api.demo.example" and rule.endpoints[0].protocol == "rest"
    assert "demo_agent" in merged.yaml and "/usr" in merged.normalised_yaml()  # baseline shown to the user


def test_users_rule_with_the_same_key_wins_and_other_rules_stay():
    user = """
version: 1
network_policies:
  demo_agent:
    endpoints: [{host: api.other.example, port: 443}]
    binaries: [{path: /usr/bin/curl}]
  mine:
    endpoints: [{host: git.example, port: 443}]
    binaries: [{path: /usr/bin/git}]
"""
    merged = merge_fragment(user, DemoAgent().policy_fragment())
    assert merged.kept == ["demo_agent"] and merged.added == []
    rules = {r.key: r for r in merged.policy.network}
    assert rules["demo_agent"].endpoints[0].host == "api.other.example"
    assert "mine" in rules


def test_invalid_fragment_names_the_field():
    with pytest.raises(PolicyError) as err:
        merge_fragment(None, {"bad": {"endpoints": [{"host": "*", "port": 443}], "binaries": [{"path": "/x"}]}})
    assert err.value.field.startswith("network_policies.bad.endpoints[0].host")


def test_base_that_is_not_a_mapping_is_refused():
    with pytest.raises(PolicyError):
        merge_fragment("- a list", {})


# --------------------------------------------------------------------------- resolve


def test_resolve_by_name_executable_and_path():
    reg = FakeRegistry(demo=DemoAgent)
    assert resolve_agent("demo", reg) is DemoAgent
    assert resolve_agent("codex", reg) is DemoAgent
    assert resolve_agent("/usr/local/bin/codex", reg) is DemoAgent


def test_ordinary_program_is_not_an_agent():
    assert resolve_agent("curl", FakeRegistry(demo=DemoAgent)) is None


def test_first_party_agent_without_its_plugin_lists_the_installed_ones():
    with pytest.raises(UnknownAgent) as err:
        resolve_agent("opencode", FakeRegistry(demo=DemoAgent))
    assert "installed agents: demo" in str(err.value)
    assert "pip install openshell-plugin-opencode" in str(err.value)


def test_explicit_unknown_agent_is_an_error():
    with pytest.raises(UnknownAgent, match="installed agents: none"):
        resolve_agent("mystery", FakeRegistry(), explicit=True)


# --------------------------------------------------------------------------- npm install


@pytest.fixture
def agent_dirs(tmp_path, monkeypatch):
    root, bindir = tmp_path / "agents", tmp_path / "bin"
    monkeypatch.setenv("OPENSHELL_AGENTS_ROOT", str(root))
    monkeypatch.setenv("OPENSHELL_AGENTS_BIN_DIR", str(bindir))
    return root, bindir


def test_detect_is_false_before_install_and_paths_follow_the_root(agent_dirs):
    root, bindir = agent_dirs
    agent = DemoAgent()
    assert agent.install_dir() == root / "demo" and agent.bin_path() == bindir / "codex"
    assert f"{root}/demo/**" in agent.binaries()
    if shutil.which("codex", path="/usr/local/bin:/usr/bin:/bin") is None:
        assert agent.detect() is False


@pytest.mark.timeout(600)
def test_npm_install_links_a_working_program_readable_by_everyone(agent_dirs):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    root, bindir = agent_dirs
    lines: list[str] = []
    result = npm_install(DemoAgent, on_output=lines.append)
    assert result.version == "codex-cli 0.171.0"
    link = bindir / "codex"
    assert link.is_symlink() and os.path.realpath(link) == result.target
    assert result.target.startswith(str(root / "demo") + "/")
    assert DemoAgent().detect() and DemoAgent().installed_version() == "0.171.0"
    mode = Path(result.target).stat().st_mode
    assert mode & 0o005 == 0o005, "others (the sandbox user) must read and execute the program"


def test_npm_install_refuses_to_replace_a_foreign_program(agent_dirs):
    _root, bindir = agent_dirs
    bindir.mkdir(parents=True)
    (bindir / "codex").write_text("#!/bin/sh\necho someone else's\n")
    with pytest.raises(NpmInstallError, match="not an OpenShell install.*--force"):
        npm_install(DemoAgent)


def test_npm_failure_reason_is_the_telling_line():
    from openshell.agents.installer import _npm_reason

    tail = [
        "npm http fetch GET 200 https://registry.npmjs.org/x 4ms",
        "npm error code 1",
        "npm error path /usr/local/lib/openshell/agents/openclaw/node_modules/openclaw",
        "npm error command failed",
        "npm error [openclaw] error: this OpenClaw release requires Node >=24.16.0 <25 || >=26.1.0.",
        "npm error A complete log of this run can be found in: /root/.npm/_logs/x.log",
    ]
    assert "requires Node >=24.16.0" in _npm_reason(tail)


def test_agent_needing_a_newer_node_is_refused_before_npm_runs(agent_dirs):
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node/npm are not installed")

    class FutureAgent(DemoAgent):
        name = "future"
        min_node = (999,)

    root, _ = agent_dirs
    with pytest.raises(NpmInstallError, match=r"future needs Node.js >= 999, this machine has \d+"):
        npm_install(FutureAgent)
    assert not (root / "future").exists(), "nothing is installed when the check fails"
