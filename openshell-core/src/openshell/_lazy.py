"""Package attributes imported on first use (PEP 562): for packages whose
``__init__`` would otherwise import every part, when a sandbox supervisor's start
needs only one of them (each import there is CPU on the way to READY)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps an exported name to the
    submodule (relative name) that defines it; the value is cached in ``namespace``
    (the package's ``globals()``) on first access.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    return __getattr__


__all__ = ["lazy_exports"]
