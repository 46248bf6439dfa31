"""stevedore's managers as the loader uses them (:mod:`openshell.plugin.loader`).

Its own module so that importing the loader does not import stevedore and
``importlib.metadata`` (~20 ms): :func:`~openshell.plugin.loader.select_module`,
which the sandbox supervisor uses, needs neither.
"""

from __future__ import annotations

from collections.abc import Iterable

from stevedore import DriverManager, NamedExtensionManager
from stevedore.exception import MultipleMatches, NoMatches


class LoadFailure(Exception):
    """Carries a BaseException (SystemExit, AssertionError) a plugin raised on import."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


class _CatchExits(NamedExtensionManager):
    # stevedore lets SystemExit and AssertionError escape an import; a plugin
    # calling sys.exit() must not take `openshell plugins list` down with it.
    def _load_one_plugin(self, ep, *args, **kwargs):
        try:
            return super()._load_one_plugin(ep, *args, **kwargs)
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except Exception:
            raise
        except BaseException as exc:
            raise LoadFailure(exc) from exc


class Manager(_CatchExits, NamedExtensionManager):
    pass


class Driver(_CatchExits, DriverManager):
    pass


def forget_stevedore_cache(groups: Iterable[str]) -> None:
    # stevedore memoises entry points per namespace for the process; a fresh
    # registry (tests, after a pip install) must see the current metadata.
    for group in groups:
        NamedExtensionManager.ENTRY_POINT_CACHE.pop(group, None)


__all__ = ["Driver", "LoadFailure", "Manager", "MultipleMatches", "NoMatches", "forget_stevedore_cache"]
