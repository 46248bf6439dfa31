"""OpenShell inference backend ``lmstudio``: LM Studio's local server (OpenAI-compatible); it takes no key.

The sandbox reaches it as ``https://inference.local``; the supervisor's router
dials the base URL from the root network namespace, so a server on the host's
loopback (``http://127.0.0.1:1234/v1``) works while the sandbox itself can never reach it.
"""

from __future__ import annotations

from collections.abc import Callable

from openshell.plugin import ModelsEndpointBackend, hookimpl

OPENSHELL_PLUGIN_API = 1


class LmStudioBackend(ModelsEndpointBackend):
    """LM Studio's local server (OpenAI-compatible); it takes no key.

    Protocol ``openai``; auth, ``list_models`` and ``probe`` (``GET {base_url}/models``)
    come from ``openshell.plugin.ModelsEndpointBackend`` (bearer auth, ``GET {base_url}/models``).
    """

    name = "lmstudio"
    summary = "LM Studio local server (default 127.0.0.1:1234, no key)"
    protocols = ("openai",)
    default_base_url = "http://127.0.0.1:1234/v1"


@hookimpl
def register_inference_backends(register: Callable[[type], None]) -> None:
    register(LmStudioBackend)
