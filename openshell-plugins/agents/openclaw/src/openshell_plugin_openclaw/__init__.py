"""OpenShell agent plugin for OpenClaw (``openclaw``), a personal AI assistant on Node.js.

OpenClaw is a Node program (``openclaw.mjs``), so its connections come from
``/usr/bin/node``: the policy fragment names node alongside its install tree.
It needs Node.js 24.16 or newer (``npm view openclaw engines``).
"""

from __future__ import annotations

from collections.abc import Callable

from openshell.agents import NpmAgent
from openshell.plugin import hookimpl

OPENSHELL_PLUGIN_API = 1

ROUTED_API_KEY = "openshell-routed-no-key"


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

        :returns: ``ANTHROPIC_BASE_URL`` (origin), ``OPENAI_BASE_URL`` (``…/v1``) and
            placeholder keys (the router injects the real credential).
        """
        origin = _origin(base_url)
        return {
            "ANTHROPIC_BASE_URL": origin,
            "OPENAI_BASE_URL": f"{origin}/v1",
            "ANTHROPIC_API_KEY": ROUTED_API_KEY,
            "OPENAI_API_KEY": ROUTED_API_KEY,
        }


@hookimpl
def register_agents(register: Callable[[type], None]) -> None:
    """Register :class:`OpenclawAgent`."""
    register(OpenclawAgent)
