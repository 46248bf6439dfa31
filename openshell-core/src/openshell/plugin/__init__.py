"""The plugin-facing API of OpenShell: everything a plugin author imports.

``from openshell.plugin import hookimpl`` plus what the kind you implement
needs; a plugin never imports other ``openshell.*`` modules (those move between
releases, this module's names do not). Tests add ``openshell.plugin.testing``.

By kind (docs/plugins.md, "What openshell.plugin exports"):

- every plugin: :data:`hookimpl`, :data:`PLUGIN_API_VERSION`, :class:`ProbeResult`;
- agents: :class:`Agent`, :class:`NpmAgent`, :func:`merge_fragment`,
  :func:`placeholder`, :class:`ProviderType` (for ``register_provider_types``);
- inference backends: :class:`InferenceBackend`, :class:`ModelsEndpointBackend`;
- isolation layers: :class:`IsolationLayer`, :class:`IsolationContext`,
  :class:`IsolationError`, the ``*_ORDER`` constants, :mod:`nsutil`;
- policy engines: :class:`PolicyEngine`, :class:`CompiledPolicy`, the policy
  model (:class:`Policy`, :class:`NetworkRule`, …), :class:`ConnectInput`,
  :class:`RequestInput`, :class:`Decision`, :func:`parse_policy`, :func:`decide`
  and the host/path helpers;
- compute drivers: :class:`ComputeDriver`, :class:`DriverContext`,
  :class:`SandboxStatus`, :data:`SANDBOX_PHASES`, :class:`SshEndpoint`,
  :class:`DriverUnsupported` (the default of ``stop``/``start``), :func:`limits_for`
  and :class:`Limits` (a sandbox spec's resources as limits);
- event hooks: :class:`SandboxEvent`, :class:`GatewayEvent`;
- the registry: :func:`get_registry`, :class:`PluginInfo`, the ``Plugin*`` errors.

The kinds' ABCs and events are imported with this module; the rest is imported
on first use (PEP 562), so ``import openshell.plugin`` stays cheap for the
sandbox launcher, which imports isolation plugins before it execs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from openshell.plugin.events import GatewayEvent, SandboxEvent
from openshell.plugin.hookspecs import hookimpl
from openshell.plugin.kinds import (
    KINDS,
    LANDLOCK_ORDER,
    MOUNT_NS_ORDER,
    NETNS_ORDER,
    SANDBOX_PHASES,
    SECCOMP_ORDER,
    USER_DROP_ORDER,
    Agent,
    CompiledPolicy,
    ComputeDriver,
    DriverContext,
    DriverUnsupported,
    InferenceBackend,
    IsolationContext,
    IsolationError,
    IsolationLayer,
    Kind,
    PolicyEngine,
    ProbeResult,
    SandboxStatus,
    SshEndpoint,
)

#: Version of the plugin API. A plugin module may set ``OPENSHELL_PLUGIN_API = 1``;
#: one that declares another major version is skipped with one clear line.
PLUGIN_API_VERSION = 1

#: name -> module it is imported from on first use (heavier than the ABCs, or
#: importing this package themselves)
_LAZY: dict[str, str] = {
    # registry
    "PluginError": "openshell.plugin.loader",
    "PluginInfo": "openshell.plugin.loader",
    "PluginLoadError": "openshell.plugin.loader",
    "PluginNotFound": "openshell.plugin.loader",
    "get_registry": "openshell.plugin.loader",
    "supervisor_entry_points": "openshell.plugin.loader",
    # agents
    "NpmAgent": "openshell.agents.npm",
    "MergedPolicy": "openshell.agents.fragment",
    "merge_fragment": "openshell.agents.fragment",
    "placeholder": "openshell.providers.placeholders",
    "ProviderType": "openshell.providers.types",
    # compute drivers: the sandbox spec's resources as kernel/runtime limits
    "Limits": "openshell.resources",
    "limits_for": "openshell.resources",
    # inference backends
    "ModelsEndpointBackend": "openshell.inference.http",
    # policy engines
    "Policy": "openshell.policy.model",
    "NetworkRule": "openshell.policy.model",
    "Endpoint": "openshell.policy.model",
    "Binary": "openshell.policy.model",
    "HttpRule": "openshell.policy.model",
    "QueryMatcher": "openshell.policy.model",
    "ConnectInput": "openshell.policy.decision",
    "RequestInput": "openshell.policy.decision",
    "Decision": "openshell.policy.decision",
    "PolicyError": "openshell.policy.errors",
    "parse_policy": "openshell.policy.parse",
    "decide": "openshell.policy.decide",
    "ACCESS_PRESETS": "openshell.policy.defaults",
    "HOST_ANY": "openshell.policy.hosts",
    "HOST_EXACT": "openshell.policy.hosts",
    "HOST_WILDCARD": "openshell.policy.hosts",
    "host_kind": "openshell.policy.hosts",
    "normalise_host": "openshell.policy.hosts",
    "request_host_error": "openshell.policy.hosts",
    "PathError": "openshell.policy.http",
    "canonical_path": "openshell.policy.http",
    "parse_query": "openshell.policy.http",
    "split_target": "openshell.policy.http",
}


#: modules re-exported whole, imported on first use
_LAZY_MODULES: dict[str, str] = {
    # isolation layers: setns/unshare/mount wrappers and /run/netns paths
    "nsutil": "openshell.supervisor.nsutil",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        value = importlib.import_module(_LAZY_MODULES[name])
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'openshell.plugin' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from openshell.agents.fragment import MergedPolicy, merge_fragment
    from openshell.agents.npm import NpmAgent
    from openshell.inference.http import ModelsEndpointBackend
    from openshell.plugin.loader import PluginError, PluginInfo, PluginLoadError, PluginNotFound, get_registry, supervisor_entry_points
    from openshell.policy.decide import decide
    from openshell.policy.decision import ConnectInput, Decision, RequestInput
    from openshell.policy.defaults import ACCESS_PRESETS
    from openshell.policy.errors import PolicyError
    from openshell.policy.hosts import HOST_ANY, HOST_EXACT, HOST_WILDCARD, host_kind, normalise_host, request_host_error
    from openshell.policy.http import PathError, canonical_path, parse_query, split_target
    from openshell.policy.model import Binary, Endpoint, HttpRule, NetworkRule, Policy, QueryMatcher
    from openshell.policy.parse import parse_policy
    from openshell.providers.placeholders import placeholder
    from openshell.providers.types import ProviderType
    from openshell.resources import Limits, limits_for
    from openshell.supervisor import nsutil


__all__ = [
    # every plugin
    "PLUGIN_API_VERSION",
    "ProbeResult",
    "hookimpl",
    # the table of kinds
    "KINDS",
    "Kind",
    # agents
    "Agent",
    "MergedPolicy",
    "NpmAgent",
    "ProviderType",
    "Limits",
    "limits_for",
    "merge_fragment",
    "placeholder",
    # inference backends
    "InferenceBackend",
    "ModelsEndpointBackend",
    # isolation layers
    "IsolationContext",
    "IsolationError",
    "IsolationLayer",
    "LANDLOCK_ORDER",
    "MOUNT_NS_ORDER",
    "NETNS_ORDER",
    "SECCOMP_ORDER",
    "USER_DROP_ORDER",
    "nsutil",
    # policy engines
    "ACCESS_PRESETS",
    "Binary",
    "CompiledPolicy",
    "ConnectInput",
    "Decision",
    "Endpoint",
    "HOST_ANY",
    "HOST_EXACT",
    "HOST_WILDCARD",
    "HttpRule",
    "NetworkRule",
    "PathError",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "QueryMatcher",
    "RequestInput",
    "canonical_path",
    "decide",
    "host_kind",
    "normalise_host",
    "parse_policy",
    "parse_query",
    "request_host_error",
    "split_target",
    # compute drivers
    "ComputeDriver",
    "DriverContext",
    "DriverUnsupported",
    "SANDBOX_PHASES",
    "SandboxStatus",
    "SshEndpoint",
    "supervisor_entry_points",
    # event hooks
    "GatewayEvent",
    "SandboxEvent",
    # the registry
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginNotFound",
    "get_registry",
]
