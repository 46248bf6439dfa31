"""The ``anthropic`` inference backend: the Anthropic Messages API."""

from __future__ import annotations

from openshell.inference.http import ModelsEndpointBackend
from openshell.plugin import hookimpl

OPENSHELL_PLUGIN_API = 1

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicBackend(ModelsEndpointBackend):
    """Anthropic (``/v1/messages``, ``/v1/messages/count_tokens``, ``/v1/models``).

    Auth: ``x-api-key: <credential>`` plus ``anthropic-version``.
    """

    name = "anthropic"
    summary = "Anthropic Messages API (api.anthropic.com or a compatible URL)"
    protocols = ("anthropic",)
    default_base_url = "https://api.anthropic.com/v1"

    def auth_headers(self, credential: str | None) -> dict[str, str]:
        """``x-api-key`` and ``anthropic-version`` (the version even without a key)."""
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if credential:
            headers["x-api-key"] = credential
        return headers


@hookimpl
def register_inference_backends(register):
    register(AnthropicBackend)
