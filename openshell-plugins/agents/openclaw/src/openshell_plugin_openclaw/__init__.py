"""OpenShell agent plugin for OpenClaw (``openclaw``), a personal AI assistant on Node.js.

OpenClaw is a Node program (``openclaw.mjs``), so its connections come from
node itself: the policy fragment names node alongside its install tree. It
needs Node.js 24.16 or newer (``npm view openclaw engines``); on a machine with
an older node, ``openshell agents install openclaw`` installs OpenShell's Node.js
24 runtime (``NpmAgent.runtime_node``) and the ``openclaw`` command runs with it.

With an inference route, ``~/.openclaw/openclaw.json`` defines two model
providers at ``inference.local``, ``openshell`` (Anthropic Messages, the
default model ``openshell/routed``) and ``openshell-openai`` (OpenAI chat
completions: ``--model openshell-openai/routed``); the router replaces the model id.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from openshell.plugin import NpmAgent, hookimpl

OPENSHELL_PLUGIN_API = 1

ROUTED_API_KEY = "openshell-routed-no-key"
#: OpenClaw's config file, relative to the sandbox home
CONFIG_PATH = ".openclaw/openclaw.json"
#: the model id OpenClaw sends (the inference router replaces it with the route's)
ROUTED_MODEL_ID = "routed"


def _origin(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class OpenclawAgent(NpmAgent):
    """OpenClaw: a Node.js program that calls Anthropic's or OpenAI's API through their SDKs."""

    name = "openclaw"
    summary = "OpenClaw personal AI assistant (npm openclaw; Node.js >= 24.16)"
    npm_package = "openclaw"
    npm_version = "2026.9.6"
    executable = "openclaw"
    provider_types = ("anthropic", "openai")
    inference_protocols = ("anthropic", "openai")
    api_hosts = ("api.anthropic.com", "api.openai.com")
    runtime_binaries = ("/usr/bin/node",)
    min_node = (24, 16)

    def inference_env(self, base_url: str) -> dict[str, str]:
        """Point the Anthropic and OpenAI SDKs OpenClaw uses at ``base_url``.

        :returns: ``ANTHROPIC_BASE_URL`` (origin), ``OPENAI_BASE_URL`` (``…/v1``),
            placeholder keys (the router injects the real credential) and
            ``TMPDIR=/tmp`` (OpenClaw's SQLite would pick ``/var/tmp``, which
            Landlock refuses inside a sandbox).
        """
        origin = _origin(base_url)
        return {
            "TMPDIR": "/tmp",
            "ANTHROPIC_BASE_URL": origin,
            "OPENAI_BASE_URL": f"{origin}/v1",
            "ANTHROPIC_API_KEY": ROUTED_API_KEY,
            "OPENAI_API_KEY": ROUTED_API_KEY,
        }

    def home_files(self, base_url: str | None) -> dict[str, str]:
        """Return ``{".openclaw/openclaw.json": …}`` routing OpenClaw's default model to ``base_url``, or ``{}``.

        The config sets ``agents.defaults.model.primary`` to ``openshell/routed``,
        which is what makes the first run skip onboarding (``openclaw agent exec``
        otherwise has no model to use).
        """
        if not base_url:
            return {}
        origin = _origin(base_url)
        model = {
            "id": ROUTED_MODEL_ID,
            "name": "OpenShell inference route",
            "reasoning": False,
            "input": ["text"],
            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
            "contextWindow": 200000,
            "maxTokens": 8192,
        }
        config = {
            "agents": {"defaults": {"model": {"primary": f"openshell/{ROUTED_MODEL_ID}"}}},
            "models": {
                "mode": "merge",
                "providers": {
                    "openshell": {"baseUrl": origin, "apiKey": ROUTED_API_KEY, "api": "anthropic-messages", "models": [model]},
                    "openshell-openai": {"baseUrl": f"{origin}/v1", "apiKey": ROUTED_API_KEY, "api": "openai-completions", "models": [model]},
                },
            },
        }
        return {CONFIG_PATH: json.dumps(config, indent=2) + "\n"}


@hookimpl
def register_agents(register: Callable[[type], None]) -> None:
    """Register :class:`OpenclawAgent`."""
    register(OpenclawAgent)
