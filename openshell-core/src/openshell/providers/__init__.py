"""Providers: named credential bundles whose values never enter a sandbox.

Public API::

    ProviderType                          # base class plugins subclass (register_provider_types hook)
    provider_types() -> {name: class}     # every installed type (core's and plugins')
    get_provider_type(name) -> class      # raises UnknownProviderType
    placeholder(env_name) -> "openshell:resolve:env:NAME"
    PlaceholderResolver                   # the proxy's header/query substitution
    discover_credentials(type, environ)   # values a type finds in an environment
    plan_auto_providers(...)              # what `sandbox create -- <agent>` offers

Modules, one job each: ``types`` (the ABC and core's six types), ``registry``
(collecting types through the hook), ``placeholders`` (the placeholder format
and substitution), ``auto`` (discovery from the user's environment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openshell._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - the names below are imported on first use (__getattr__)
    from openshell.providers.auto import AutoProviderPlan, discover_credentials, plan_auto_providers
    from openshell.providers.placeholders import PLACEHOLDER_PREFIX, PlaceholderError, PlaceholderResolver, placeholder
    from openshell.providers.registry import UnknownProviderType, get_provider_type, provider_types
    from openshell.providers.types import ProviderType

# name -> module. Imported on first use: the supervisor's proxy needs only
# ``placeholders``, and ``registry`` brings the whole plugin loader (entry-point
# scan, stevedore): tens of ms on every sandbox start.
_HOME = {
    "AutoProviderPlan": "auto",
    "discover_credentials": "auto",
    "plan_auto_providers": "auto",
    "PLACEHOLDER_PREFIX": "placeholders",
    "PlaceholderError": "placeholders",
    "PlaceholderResolver": "placeholders",
    "placeholder": "placeholders",
    "UnknownProviderType": "registry",
    "get_provider_type": "registry",
    "provider_types": "registry",
    "ProviderType": "types",
}


__getattr__ = lazy_exports("openshell.providers", _HOME, globals())


__all__ = [
    "PLACEHOLDER_PREFIX",
    "AutoProviderPlan",
    "PlaceholderError",
    "PlaceholderResolver",
    "ProviderType",
    "UnknownProviderType",
    "discover_credentials",
    "get_provider_type",
    "placeholder",
    "plan_auto_providers",
    "provider_types",
]
