"""The Codex plugin: contract, config.toml for inference.local, policy fragment."""

from __future__ import annotations

import tomllib

from openshell.plugin import merge_fragment
from openshell.plugin.testing import AgentContract
from openshell_plugin_codex import CONFIG_PATH, KEY_ENV, CodexAgent


class TestCodexContract(AgentContract):
    plugin_class = CodexAgent


def test_config_toml_selects_a_responses_provider_at_inference_local() -> None:
    files = CodexAgent().home_files("https://inference.local")
    config = tomllib.loads(files[CONFIG_PATH])
    assert config["model_provider"] == "openshell"
    provider = config["model_providers"]["openshell"]
    assert provider["base_url"] == "https://inference.local/v1"
    assert provider["wire_api"] == "responses"
    assert provider["env_key"] == KEY_ENV
    assert KEY_ENV in CodexAgent().inference_env("https://inference.local")


def test_no_config_without_an_inference_route() -> None:
    assert CodexAgent().home_files(None) == {}


def test_fragment_covers_the_native_binary_under_the_install_tree() -> None:
    merged = merge_fragment(None, CodexAgent().policy_fragment())
    (rule,) = merged.policy.network
    assert "api.openai.com" in {e.host for e in rule.endpoints}
    assert any(b.path.endswith("/agents/codex/**") for b in rule.binaries)
