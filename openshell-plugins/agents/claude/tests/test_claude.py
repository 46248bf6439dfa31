"""The Claude Code plugin: contract, policy fragment, inference environment."""

from __future__ import annotations

from openshell.plugin import merge_fragment
from openshell.plugin.testing import AgentContract
from openshell_plugin_claude import ClaudeAgent


class TestClaudeContract(AgentContract):
    plugin_class = ClaudeAgent


def test_argv_runs_claude_with_the_users_arguments() -> None:
    assert ClaudeAgent().argv(["-p", "hi"]) == ["claude", "-p", "hi"]
    assert ClaudeAgent.package == "npm:@anthropic-ai/claude-code"


def test_fragment_lets_only_claudes_binary_reach_anthropic() -> None:
    merged = merge_fragment(None, ClaudeAgent().policy_fragment())
    (rule,) = merged.policy.network
    assert {e.host for e in rule.endpoints} == {"api.anthropic.com", "console.anthropic.com"}
    assert all(e.ports == (443,) and e.protocol == "rest" for e in rule.endpoints)
    paths = [b.path for b in rule.binaries]
    assert paths[0].endswith("/bin/claude") and paths[1].endswith("/agents/claude/**")
    assert "/usr/bin/node" not in paths  # Claude Code is a native binary


def test_inference_env_points_at_the_origin_of_inference_local() -> None:
    env = ClaudeAgent().inference_env("https://inference.local/v1")
    assert env["ANTHROPIC_BASE_URL"] == "https://inference.local"  # Claude appends /v1/messages
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"


def test_home_file_skips_onboarding_and_approves_only_placeholder_keys() -> None:
    import json

    state = json.loads(ClaudeAgent().home_files("https://inference.local")[".claude.json"])
    assert state["hasCompletedOnboarding"] is True
    assert state["customApiKeyResponses"]["approved"] == ["nshell-routed-no-key", "e:env:ANTHROPIC_API_KEY"[-20:]]
    assert "projects" not in state, "trusting the workdir is the user's decision"
