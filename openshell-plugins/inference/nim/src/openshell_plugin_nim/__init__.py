"""OpenShell inference backend ``nim``: NVIDIA NIM: hosted at integrate.api.nvidia.com (needs an ``nvidia`` provider) or self-hosted (``--base-url``).

The sandbox reaches it as ``https://inference.local``; the supervisor's router
dials the base URL from the root network namespace, so a server on the host's
loopback (``https://integrate.api.nvidia.com/v1``) works while the sandbox itself can never reach it.
"""

from __future__ import annotations

from collections.abc import Callable

from openshell.plugin import ModelsEndpointBackend, hookimpl

OPENSHELL_PLUGIN_API = 1


class NimBackend(ModelsEndpointBackend):
    """NVIDIA NIM: hosted at integrate.api.nvidia.com (needs an ``nvidia`` provider) or self-hosted (``--base-url``).

    Protocol ``openai``; auth, ``list_models`` and ``probe`` (``GET {base_url}/models``)
    come from ``openshell.plugin.ModelsEndpointBackend`` (bearer auth, ``GET {base_url}/models``).
    """

    name = "nim"
    summary = "NVIDIA NIM (hosted integrate.api.nvidia.com or self-hosted)"
    protocols = ("openai",)
    default_base_url = "https://integrate.api.nvidia.com/v1"


@hookimpl
def register_inference_backends(register: Callable[[type], None]) -> None:
    register(NimBackend)
