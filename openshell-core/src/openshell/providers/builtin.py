"""Core's provider types, registered through the same hook plugins implement."""

from __future__ import annotations

from openshell.plugin import hookimpl
from openshell.providers.types import CORE_TYPES


@hookimpl
def register_provider_types(register):
    for cls in CORE_TYPES:
        register(cls)
