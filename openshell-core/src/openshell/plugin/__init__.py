"""The plugin-facing API of OpenShell: everything a plugin author imports.

``from openshell.plugin import hookimpl`` plus the ABC of the kind you implement.
"""

from __future__ import annotations

import pluggy

from openshell.plugin.kinds import (
    Agent,
    CompiledPolicy,
    ComputeDriver,
    DriverContext,
    InferenceBackend,
    IsolationContext,
    IsolationError,
    IsolationLayer,
    PolicyEngine,
    ProbeResult,
    SandboxStatus,
    SshEndpoint,
)

#: Version of the plugin API. A plugin module may set ``OPENSHELL_PLUGIN_API = 1``;
#: one that declares another major version is skipped with one clear line.
PLUGIN_API_VERSION = 1

hookimpl = pluggy.HookimplMarker("openshell")

#: names re-exported lazily from ``openshell.plugin.loader`` (it imports this module)
_LOADER_NAMES = frozenset({"PluginError", "PluginInfo", "PluginLoadError", "PluginNotFound", "get_registry"})


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from openshell.plugin import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'openshell.plugin' has no attribute {name!r}")


__all__ = [
    "PLUGIN_API_VERSION",
    "Agent",
    "CompiledPolicy",
    "ComputeDriver",
    "DriverContext",
    "InferenceBackend",
    "IsolationContext",
    "IsolationError",
    "IsolationLayer",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginNotFound",
    "PolicyEngine",
    "ProbeResult",
    "SandboxStatus",
    "SshEndpoint",
    "get_registry",
    "hookimpl",
]
