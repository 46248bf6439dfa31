"""Collect provider types from core and every loaded plugin (hook ``register_provider_types``).

Core's module ``openshell.providers.builtin`` is registered with the process
plugin manager under ``core:providers`` and answers the hook like any plugin,
so the built-ins prove the API. Any plugin (agent, inference, …) may register
types; a later registration of an existing name is ignored with a warning
(first wins: core, then plugins in load order).
"""

from __future__ import annotations

import logging
from typing import Any

from openshell.plugin.loader import get_registry
from openshell.providers import builtin
from openshell.providers.types import ProviderType

log = logging.getLogger("openshell.providers")

CORE_PLUGIN_NAME = "core:providers"


class UnknownProviderType(LookupError):
    """No provider type of that name is installed."""


def _ensure_core(pm: Any) -> None:
    if pm.get_plugin(CORE_PLUGIN_NAME) is None and pm.get_name(builtin) is None:
        pm.register(builtin, name=CORE_PLUGIN_NAME)


def provider_types(registry: Any = None) -> dict[str, type[ProviderType]]:
    """Return ``{name: class}`` of every installed provider type, sorted by name.

    :param registry: an ``openshell.plugin.loader.Registry``; default the process one.
    :returns: core's types plus those plugins register. A plugin whose hook
        raises or registers something that is not a ``ProviderType`` subclass is
        skipped with a warning (its other types too).
    """
    from openshell.plugin.loader import registration_arguments

    if registry is None:
        registry = get_registry()
    pm = registry.pm
    _ensure_core(pm)
    found: dict[str, type[ProviderType]] = {}
    caller = pm.hook.register_provider_types
    impls = list(caller.get_hookimpls())
    # Core first so a plugin can never shadow a built-in name.
    impls.sort(key=lambda impl: impl.plugin_name != CORE_PLUGIN_NAME)
    for impl in impls:
        batch: list[type[ProviderType]] = []

        def register(cls: Any, _batch=batch) -> None:
            if not isinstance(cls, type) or not issubclass(cls, ProviderType) or not getattr(cls, "name", ""):
                raise TypeError(f"register_provider_types: {cls!r} is not a named subclass of ProviderType")
            _batch.append(cls)

        # Bound by name, like every registration hook (a later argument must not
        # reach a plugin's ``register`` parameter).
        available = registration_arguments(register)
        try:
            impl.function(**{arg: available[arg] for arg in impl.argnames})
        except Exception as exc:  # noqa: BLE001 - one bad plugin must not hide the others
            log.warning("event=provider_types_failed plugin=%s error=%s", impl.plugin_name, exc)
            continue
        for cls in batch:
            if cls.name in found and found[cls.name] is not cls:
                log.warning("event=provider_type_duplicate name=%s plugin=%s", cls.name, impl.plugin_name)
                continue
            found[cls.name] = cls
    return dict(sorted(found.items()))


def get_provider_type(name: str, registry: Any = None) -> type[ProviderType]:
    """Return the provider type ``name``.

    :raises UnknownProviderType: naming the installed types.
    """
    types = provider_types(registry)
    try:
        return types[name]
    except KeyError:
        raise UnknownProviderType(f"unknown provider type {name!r}; installed types: {', '.join(types)}") from None
