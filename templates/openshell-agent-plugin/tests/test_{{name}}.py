"""{{class_name}} passes the agent plugin contract and behaves as documented."""

from __future__ import annotations

from openshell.plugin import merge_fragment
from openshell.plugin.testing import AgentContract
from openshell_plugin_{{name}} import {{class_name}}


class Test{{class_name}}Contract(AgentContract):
    """Entry point, registration without I/O, argv, a valid policy fragment, home files."""

    plugin_class = {{class_name}}


def test_argv_starts_the_program_with_the_users_arguments() -> None:
    assert {{class_name}}().argv(["--help"]) == ["{{executable}}", "--help"]
    assert {{class_name}}.package == "npm:{{npm_package}}"


def test_policy_fragment_allows_only_its_api_hosts_for_its_own_binary() -> None:
    (rule,) = merge_fragment(None, {{class_name}}().policy_fragment()).policy.network
    assert {e.host for e in rule.endpoints} == {"{{api_host}}"}
    paths = [b.path for b in rule.binaries]
    assert paths[0].endswith("/{{executable}}")
    assert any(p.endswith("/agents/{{name}}/**") for p in paths)


def test_inference_env_points_at_inference_local() -> None:
    env = {{class_name}}().inference_env("https://inference.local")
    assert env["{{env_prefix}}_BASE_URL"] == "https://inference.local/v1"
