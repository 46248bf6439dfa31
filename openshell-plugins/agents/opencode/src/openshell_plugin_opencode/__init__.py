"""OpenShell agent plugin for OpenCode (``opencode-ai``).

OpenCode reads its providers from ``$HOME/.config/opencode/opencode.json``.
When an inference route is set, the CLI writes one there that points OpenCode's
built-in Anthropic provider at ``https://inference.local/v1`` (the router
rewrites the model id to the route's model).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from openshell.plugin import NpmAgent, hookimpl

OPENSHELL_PLUGIN_API = 1

ROUTED_API_KEY = "openshell-routed-no-key"
CONFIG_PATH = ".config/opencode/opencode.json"
#: model OpenCode asks for; the router replaces it with the route's model
ROUTED_MODEL = "anthropic/claude-sonnet-4-5"


def _v1(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class OpencodeAgent(NpmAgent):
    """OpenCode: a native binary from npm that speaks several providers' APIs."""

    name = "opencode"
    summary = "OpenCode, the open source coding agent (npm opencode-ai)"
    npm_package = "opencode-ai"
    npm_version = "1.18.33"
    executable = "opencode"
    provider_types = ("anthropic", "openai")
    inference_protocols = ("anthropic",)
    api_hosts = ("api.anthropic.com", "api.openai.com")

    def inference_env(self, base_url: str) -> dict[str, str]:
        """Switch off OpenCode's model-catalogue download and auto-update (hosts outside its policy).

        :param base_url: unused; the endpoint goes into :meth:`home_files`.
        """
        return {
            "ANTHROPIC_API_KEY": ROUTED_API_KEY,
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
        }

    def home_files(self, base_url: str | None) -> dict[str, str]:
        """Return ``{".config/opencode/opencode.json": …}`` routing OpenCode to ``base_url``, or ``{}``."""
        if not base_url:
            return {}
        config = {
            "$schema": "https://opencode.ai/config.json",
            "model": ROUTED_MODEL,
            "autoupdate": False,
            "share": "disabled",
            "provider": {"anthropic": {"options": {"baseURL": _v1(base_url), "apiKey": ROUTED_API_KEY}}},
        }
        return {CONFIG_PATH: json.dumps(config, indent=2) + "\n"}


@hookimpl
def register_agents(register: Callable[[type], None]) -> None:
    """Register :class:`OpencodeAgent`."""
    register(OpencodeAgent)
