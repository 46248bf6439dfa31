"""First-party plugins and the plugin template use only the plugin-facing API.

They import ``openshell.plugin`` (and ``openshell.plugin.testing`` in tests),
never other core modules, and bound their ``openshell-core`` dependency to the
API's release series: what a third-party plugin can copy without breaking when
core's internals move.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p.parent for p in REPO.glob("openshell-plugins/*/*/pyproject.toml")) + [REPO / "templates" / "openshell-agent-plugin"]
ALLOWED = {"openshell.plugin", "openshell.plugin.testing"}


def _openshell_imports(path: Path) -> list[str]:
    # by regex, not ast: the template's files hold {{placeholders}} until rendered
    found = re.findall(r"^\s*(?:from|import)\s+(openshell(?:\.[\w.]+)?)\b", path.read_text(), flags=re.MULTILINE)
    return [m for m in found if m == "openshell" or m.startswith("openshell.")]


def test_there_are_plugins_to_check():
    assert len(PLUGIN_DIRS) >= 10


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugin_imports_only_the_plugin_api(plugin_dir):
    bad = {}
    for path in [*plugin_dir.glob("src/**/*.py"), *plugin_dir.glob("tests/**/*.py")]:
        outside = [m for m in _openshell_imports(path) if m not in ALLOWED]
        if outside:
            bad[str(path.relative_to(REPO))] = outside
    assert not bad, f"import these names from openshell.plugin instead: {bad}"


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugin_bounds_its_openshell_core_dependency(plugin_dir):
    text = (plugin_dir / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, flags=re.MULTILINE | re.DOTALL)
    assert deps, "no dependencies list"
    core = re.findall(r'"openshell-core([^"]*)"', deps.group(1))
    assert core, "depends on openshell-core"
    assert ">=" in core[0] and "<" in core[0].replace("<=", ""), f"openshell-core{core[0]} needs a lower and an upper bound, e.g. >=0.1,<0.2"
