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
    "PolicyEngine",
    "ProbeResult",
    "SandboxStatus",
    "SshEndpoint",
    "hookimpl",
]
