"""OpenShell agent plugin for {{summary}} (npm ``{{npm_package}}``).

``openshell agents install {{name}}`` installs the program where every sandbox
can run it; ``openshell sandbox create -- {{executable}}`` runs it in a sandbox
whose policy lets only its own binary reach its API hosts, and points it at
``https://inference.local`` when an inference route is set.
"""

from __future__ import annotations

from collections.abc import Callable

from openshell.plugin import NpmAgent, hookimpl

#: the plugin API this module was written for (openshell.plugin.PLUGIN_API_VERSION)
OPENSHELL_PLUGIN_API = 1

#: key the agent sends to inference.local; the router strips it and injects the
#: route's real credential, so this is not a secret
ROUTED_API_KEY = "openshell-routed-no-key"


class {{class_name}}(NpmAgent):
    """{{summary}}."""

    name = "{{name}}"
    summary = "{{summary}}"
    npm_package = "{{npm_package}}"
    npm_version = "{{npm_version}}"
    executable = "{{executable}}"
    #: provider types whose credentials it needs ('openshell provider create --type ...')
    provider_types = ("{{provider_type}}",)
    #: what it speaks to https://inference.local ("openai" and/or "anthropic"); the CLI
    #: warns when the inference route speaks something else
    inference_protocols = ("openai",)
    #: hosts (port 443) its own binary may reach; everything else is denied
    api_hosts = ("{{api_host}}",)
    #: add "/usr/bin/node" when the agent is a Node.js script (its connections come from node)
    runtime_binaries: tuple[str, ...] = ()

    def inference_env(self, base_url: str) -> dict[str, str]:
        """Point the agent at ``base_url`` (``https://inference.local``) with the variables it reads.

        Change the variable names to the ones your agent reads. If it reads its
        endpoint from a config file instead, override ``home_files(base_url)``
        and return ``{"relative/path/under/home": "file text"}``.
        """
        return {
            "{{env_prefix}}_BASE_URL": f"{base_url.rstrip('/')}/v1",
            "{{env_prefix}}_API_KEY": ROUTED_API_KEY,
        }


@hookimpl
def register_agents(register: Callable[[type], None]) -> None:
    """Register :class:`{{class_name}}` (classes, not instances; no I/O here)."""
    register({{class_name}})
