"""OpenShell agent plugin for Claude Code (``@anthropic-ai/claude-code``).

``openshell agents install claude`` installs the program; ``openshell sandbox
create -- claude`` runs it in a sandbox whose policy lets only Claude Code's own
binary reach Anthropic's API, and — when an inference route is set — points it
at ``https://inference.local`` so its model calls go through OpenShell's router.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from openshell.plugin import NpmAgent, hookimpl

OPENSHELL_PLUGIN_API = 1

#: placeholder key when the router authenticates (it strips the caller's auth);
#: Claude Code refuses to start without some key. Not a secret.
ROUTED_API_KEY = "openshell-routed-no-key"


def _origin(base_url: str) -> str:
    """``https://inference.local/v1`` or ``…/`` → ``https://inference.local`` (Claude adds ``/v1/messages``)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class ClaudeAgent(NpmAgent):
    """Claude Code: native binary from npm; Anthropic Messages API (SSE).

    Measured with 2.1.x (see README): with ``ANTHROPIC_BASE_URL`` set it sends
    ``HEAD /`` then ``POST /v1/messages?beta=true`` with ``stream: true``.
    """

    name = "claude"
    summary = "Claude Code, Anthropic's coding agent (npm @anthropic-ai/claude-code)"
    npm_package = "@anthropic-ai/claude-code"
    npm_version = "2.1.332"
    executable = "claude"
    provider_types = ("anthropic",)
    inference_protocols = ("anthropic",)
    api_hosts = ("api.anthropic.com", "console.anthropic.com")

    def inference_env(self, base_url: str) -> dict[str, str]:
        """Point Claude Code at ``base_url``'s origin and switch off its non-essential traffic.

        :param base_url: ``https://inference.local`` (a trailing ``/v1`` is dropped).
        :returns: ``ANTHROPIC_BASE_URL``, a placeholder ``ANTHROPIC_API_KEY`` (the
            router injects the real credential), and switches that keep it from
            calling hosts outside its policy (telemetry, auto-update).
        """
        return {
            "ANTHROPIC_BASE_URL": _origin(base_url),
            "ANTHROPIC_API_KEY": ROUTED_API_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }

    def home_files(self, base_url: str | None) -> dict[str, str]:
        """Return ``{".claude.json": …}``: first-run onboarding done, the sandbox's key approved.

        Without it, interactive Claude Code starts with a theme picker and a
        connectivity check against api.anthropic.com, then asks whether to use
        the ``ANTHROPIC_API_KEY`` it found. That key is never a secret here: the
        routed placeholder or a provider's ``openshell:resolve:env:…``
        placeholder, so both are pre-approved (Claude Code keeps the last 20
        characters of approved keys). The folder-trust question stays the user's.

        :param base_url: unused; the file is the same with or without a route.
        """
        from openshell.plugin import placeholder

        approved = [ROUTED_API_KEY[-20:], placeholder("ANTHROPIC_API_KEY")[-20:]]
        state = {"hasCompletedOnboarding": True, "customApiKeyResponses": {"approved": approved, "rejected": []}}
        return {".claude.json": json.dumps(state, indent=2) + "\n"}


@hookimpl
def register_agents(register: Callable[[type], None]) -> None:
    """Register :class:`ClaudeAgent`."""
    register(ClaudeAgent)
