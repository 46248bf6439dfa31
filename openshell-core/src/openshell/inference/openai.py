"""The ``openai`` inference backend: any OpenAI-compatible API."""

from __future__ import annotations

from openshell.inference.http import get_json, model_ids, models_url, probe_models
from openshell.plugin import InferenceBackend, ProbeResult, hookimpl

OPENSHELL_PLUGIN_API = 1


class OpenAIBackend(InferenceBackend):
    """OpenAI or any OpenAI-compatible server (chat/completions, responses, embeddings, models).

    Auth: ``Authorization: Bearer <credential>`` (none without a credential).
    """

    name = "openai"
    summary = "OpenAI API or any OpenAI-compatible URL (--base-url)"
    protocols = ("openai",)
    default_base_url = "https://api.openai.com/v1"

    def list_models(self, base_url: str, credential: str | None) -> list[str]:
        """Model ids from ``GET {base_url}/models``; raises ``OSError`` when unreachable."""
        return model_ids(get_json(models_url(base_url), self.auth_headers(credential)))

    def probe(self, base_url: str, credential: str | None) -> ProbeResult:
        """OK when ``GET {base_url}/models`` answers with a models list."""
        return probe_models(base_url, self.auth_headers(credential))


@hookimpl
def register_inference_backends(register):
    register(OpenAIBackend)
