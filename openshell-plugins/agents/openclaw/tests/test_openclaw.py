"""The OpenClaw plugin: contract, node in its fragment, SDK base URLs."""

from __future__ import annotations

from openshell.agents import merge_fragment
from openshell.plugin.testing import AgentContract
from openshell_plugin_openclaw import OpenclawAgent


class TestOpenclawContract(AgentContract):
    plugin_class = OpenclawAgent


def test_fragment_names_node_because_openclaw_is_a_node_program() -> None:
    (rule,) = merge_fragment(None, OpenclawAgent().policy_fragment()).policy.network
    assert "/usr/bin/node" in [b.path for b in rule.binaries]


def test_inference_env_points_both_sdks_at_inference_local() -> None:
    env = OpenclawAgent().inference_env("https://inference.local")
    assert env["ANTHROPIC_BASE_URL"] == "https://inference.local"
    assert env["OPENAI_BASE_URL"] == "https://inference.local/v1"
