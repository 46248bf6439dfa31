"""OpenShell inference backend ``nim``: NVIDIA NIM: hosted at integrate.api.nvidia.com (needs an ``nvidia`` provider) or self-hosted (``--base-url``).

The sandbox reaches it as ``https://inference.local``; the supervisor's router
dials the base URL from the root network namespace, so a server on the host's
loopback (``https://integrate.api.nvidia.com/v1``) works while the sandbox itself can never reach it.
"""

from __future__ import annotations

from openshell.inference.http import get_json, model_ids, models_url, probe_models
from openshell.plugin import InferenceBackend, ProbeResult, hookimpl

OPENSHELL_PLUGIN_API = 1


class NimBackend(InferenceBackend):
    """NVIDIA NIM: hosted at integrate.api.nvidia.com (needs an ``nvidia`` provider) or self-hosted (``--base-url``).

    Protocol ``openai``; auth ``Authorization: Bearer <credential>`` when a provider is given.
    """

    name = "nim"
    summary = "NVIDIA NIM (hosted integrate.api.nvidia.com or self-hosted)"
    protocols = ("openai",)
    default_base_url = "https://integrate.api.nvidia.com/v1"

    def list_models(self, base_url: str, credential: str | None) -> list[str]:
        """Model ids from ``GET {base_url}/models``; raises ``OSError`` when unreachable."""
        return model_ids(get_json(models_url(base_url), self.auth_headers(credential)))

    def probe(self, base_url: str, credential: str | None) -> ProbeResult:
        """OK when ``GET {base_url}/models`` answers with a models list."""
        return probe_models(base_url, self.auth_headers(credential))


@hookimpl
def register_inference_backends(register):
    register(NimBackend)
