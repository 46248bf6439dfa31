"""The ``openai`` inference backend: any OpenAI-compatible API."""

from __future__ import annotations

from openshell.inference.http import ModelsEndpointBackend
from openshell.plugin import hookimpl

OPENSHELL_PLUGIN_API = 1


class OpenAIBackend(ModelsEndpointBackend):
    """OpenAI or any OpenAI-compatible server (chat/completions, responses, embeddings, models).

    Auth: ``Authorization: Bearer <credential>`` (none without a credential).
    """

    name = "openai"
    summary = "OpenAI API or any OpenAI-compatible URL (--base-url)"
    protocols = ("openai",)
    default_base_url = "https://api.openai.com/v1"


@hookimpl
def register_inference_backends(register):
    register(OpenAIBackend)
