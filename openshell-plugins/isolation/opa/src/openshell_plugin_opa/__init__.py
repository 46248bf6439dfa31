"""The ``opa`` policy engine plugin (entry point ``openshell.policy: opa``).

Registers :class:`OpaEngine`, which evaluates the network policy in Rego with
regopy (POLICY.md §2.1–2.4, §3). Destination safety (§2.5) is applied by the
caller through ``openshell.plugin.decide``.
"""

from __future__ import annotations

from collections.abc import Callable

from openshell.plugin import hookimpl

from openshell_plugin_opa.engine import OpaCompiled, OpaEngine

OPENSHELL_PLUGIN_API = 1


@hookimpl
def register_policy_engines(register: Callable[[type], None]) -> None:
    """Register :class:`OpaEngine` (no I/O, no imports beyond this package)."""
    register(OpaEngine)


__all__ = ["OpaCompiled", "OpaEngine", "register_policy_engines"]
