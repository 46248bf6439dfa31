"""OpenShell agent plugin for the OpenAI Codex CLI (``@openai/codex``).

Codex ignores ``OPENAI_BASE_URL``; it reads model providers from
``$HOME/.codex/config.toml``. When an inference route is set, this plugin has
the CLI write a provider ``openshell`` (``base_url = https://inference.local/v1``,
``wire_api = "responses"``) into the sandbox's home (``/sandbox``) before Codex starts.
"""

from __future__ import annotations

from collections.abc import Callable

from openshell.plugin import NpmAgent, hookimpl

OPENSHELL_PLUGIN_API = 1

#: env var named by the provider's ``env_key``; Codex refuses to start when it is
#: unset. The router strips the caller's auth and injects the real one; not a secret.
KEY_ENV = "OPENSHELL_INFERENCE_API_KEY"
ROUTED_API_KEY = "openshell-routed-no-key"
CONFIG_PATH = ".codex/config.toml"


def _v1(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def _toml_string(value: str) -> str:
    """A TOML basic string (quotes, backslashes and control characters escaped)."""
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(ch if ord(ch) >= 0x20 else f"\\u{ord(ch):04x}" for ch in out) + '"'


class CodexAgent(NpmAgent):
    """OpenAI Codex CLI: a node launcher that execs a native binary; Responses API.

    Measured with 0.171 (see README): it tries the Responses API over WebSocket
    first, then HTTPS streaming, and waits for ``response.completed``.
    """

    name = "codex"
    summary = "OpenAI Codex CLI (npm @openai/codex)"
    npm_package = "@openai/codex"
    npm_version = "0.171.0"
    executable = "codex"
    provider_types = ("openai",)
    inference_protocols = ("openai",)
    api_hosts = ("api.openai.com", "auth.openai.com", "chatgpt.com")

    def inference_env(self, base_url: str) -> dict[str, str]:
        """Return the key variable the ``openshell`` model provider names (a placeholder).

        :param base_url: unused here; the endpoint goes into :meth:`home_files`.
        """
        return {KEY_ENV: ROUTED_API_KEY}

    def home_files(self, base_url: str | None) -> dict[str, str]:
        """Return ``{".codex/config.toml": …}`` selecting the ``openshell`` provider, or ``{}``.

        :param base_url: ``https://inference.local`` when a route is set; ``/v1``
            is appended when missing. None → no file (Codex talks to OpenAI itself).
        """
        if not base_url:
            return {}
        text = (
            "# Written by OpenShell: Codex's model calls go to the sandbox's inference route.\n"
            'model_provider = "openshell"\n'
            "\n"
            "[model_providers.openshell]\n"
            'name = "OpenShell inference.local"\n'
            f"base_url = {_toml_string(_v1(base_url))}\n"
            f"env_key = {_toml_string(KEY_ENV)}\n"
            'wire_api = "responses"\n'
        )
        return {CONFIG_PATH: text}


@hookimpl
def register_agents(register: Callable[[type], None]) -> None:
    """Register :class:`CodexAgent`."""
    register(CodexAgent)
