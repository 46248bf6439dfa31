"""Fixtures for the plugin-core tests: throwaway distributions on sys.path.

A fake distribution is a ``*.dist-info`` folder (METADATA + entry_points.txt)
plus plain modules in a temporary folder prepended to ``sys.path`` — exactly
what importlib.metadata and stevedore read for an installed wheel, without pip.
Entry points go to test-only groups so the real installed plugins stay out.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from openshell.plugin.loader import reset_registry

#: kind -> entry-point group used only by these tests
TEST_GROUPS = {kind: f"openshell_test.{kind}" for kind in ("agents", "inference", "isolation", "policy", "drivers")}

MakeDist = Callable[..., Path]


@pytest.fixture(autouse=True)
def _plugin_env(monkeypatch: pytest.MonkeyPatch):
    # nox runs the suite with OPENSHELL_STRICT_PLUGINS=1; each test chooses its own mode.
    monkeypatch.delenv("OPENSHELL_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("OPENSHELL_DISABLE_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeDist:
    """Return ``make(dist, entry_points={kind: {name: module}}, modules={module: source})``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules_made: list[str] = []

    def make(
        dist: str,
        entry_points: Mapping[str, Mapping[str, str]],
        modules: Mapping[str, str],
        version: str = "1.0",
    ) -> Path:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines: list[str] = []
        for kind, eps in entry_points.items():
            lines.append(f"[{TEST_GROUPS[kind]}]")
            lines += [f"{name} = {module}" for name, module in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            modules_made.append(module)
        importlib.invalidate_caches()
        return info

    yield make
    for module in modules_made:
        sys.modules.pop(module, None)


def agent_source(name: str, *, base: str = "Agent", extra: str = "") -> str:
    """Source of a plugin module registering one agent class called ``name``."""
    return f"""
from openshell.plugin import Agent, IsolationLayer, ProbeResult, hookimpl

class Plugin({base}):
    name = {name!r}
    summary = "test plugin {name}"

    def argv(self, extra=()):
        return [{name!r}, *extra]

    def probe(self):
        return ProbeResult(True, "ok")

    def apply_in_child(self, ctx):
        pass

@hookimpl
def register_agents(register):
    register(Plugin)
{extra}
"""


@pytest.fixture
def agent_src() -> Callable[..., str]:
    """The :func:`agent_source` helper, as a fixture (test modules don't import conftest)."""
    return agent_source
