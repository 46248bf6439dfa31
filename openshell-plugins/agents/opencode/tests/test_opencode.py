"""The OpenCode plugin: contract and its config for inference.local."""

from __future__ import annotations

import json

from openshell.plugin.testing import AgentContract
from openshell_plugin_opencode import CONFIG_PATH, OpencodeAgent


class TestOpencodeContract(AgentContract):
    plugin_class = OpencodeAgent


def test_config_points_the_anthropic_provider_at_inference_local() -> None:
    config = json.loads(OpencodeAgent().home_files("https://inference.local")[CONFIG_PATH])
    assert config["provider"]["anthropic"]["options"]["baseURL"] == "https://inference.local/v1"
    assert config["model"].startswith("anthropic/")
    assert OpencodeAgent().home_files(None) == {}
    assert OpencodeAgent().argv(["run", "hi"]) == ["opencode", "run", "hi"]
