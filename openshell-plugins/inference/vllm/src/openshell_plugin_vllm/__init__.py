"""OpenShell inference backend ``vllm``: vLLM's OpenAI-compatible server; a key is optional (``vllm serve --api-key``).

The sandbox reaches it as ``https://inference.local``; the supervisor's router
dials the base URL from the root network namespace, so a server on the host's
loopback (``http://127.0.0.1:8000/v1``) works while the sandbox itself can never reach it.
"""

from __future__ import annotations

from openshell.inference.http import get_json, model_ids, models_url, probe_models
from openshell.plugin import InferenceBackend, ProbeResult, hookimpl

OPENSHELL_PLUGIN_API = 1


class VllmBackend(InferenceBackend):
    """vLLM's OpenAI-compatible server; a key is optional (``vllm serve --api-key``).

    Protocol ``openai``; auth ``Authorization: Bearer <credential>`` when a provider is given.
    """

    name = "vllm"
    summary = "vLLM OpenAI-compatible server (default 127.0.0.1:8000, key optional)"
    protocols = ("openai",)
    default_base_url = "http://127.0.0.1:8000/v1"

    def list_models(self, base_url: str, credential: str | None) -> list[str]:
        """Model ids from ``GET {base_url}/models``; raises ``OSError`` when unreachable."""
        return model_ids(get_json(models_url(base_url), self.auth_headers(credential)))

    def probe(self, base_url: str, credential: str | None) -> ProbeResult:
        """OK when ``GET {base_url}/models`` answers with a models list."""
        return probe_models(base_url, self.auth_headers(credential))


@hookimpl
def register_inference_backends(register):
    register(VllmBackend)
