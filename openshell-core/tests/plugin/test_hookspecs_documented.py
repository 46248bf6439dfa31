"""Every hookspec is documented in docs/plugins.md with its exact signature and a
runnable example, and has a docstring stating its contract (STYLE.md, plugin core)."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import click
import pytest
from openshell.plugin import GatewayEvent, SandboxEvent, hookspecs
from openshell.plugin.kinds import KINDS
from openshell.plugin.loader import (
    collect_classes,
    new_plugin_manager,
    register_module,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"

SPECS = {name: func for name, func in inspect.getmembers(hookspecs, inspect.isfunction) if getattr(func, "openshell_spec", None) is not None}


def signature(func) -> str:
    """``name(arg, ...)`` — how the docs spell a hook in its heading."""
    return f"{func.__name__}({', '.join(inspect.signature(func).parameters)})"


def sections() -> dict[str, str]:
    """``{heading text: body}`` for every ``### `...` `` heading in the docs."""
    text = DOCS.read_text()
    parts = re.split(r"^### `([^`]+)`\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts), 2)}


def test_there_are_hookspecs():
    assert {"register_agents", "register_commands", "sandbox_created"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_a_docstring_with_a_one_line_contract(name):
    doc = inspect.getdoc(SPECS[name]) or ""
    assert doc, f"hookspec {name} has no docstring"
    first = doc.splitlines()[0]
    assert first.endswith("."), f"hookspec {name}: first docstring line must state its contract in one sentence"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_documented_with_its_exact_signature(name):
    heading = signature(SPECS[name])
    assert heading in sections(), f"docs/plugins.md has no heading: ### `{heading}`"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_documented_example_runs(name):
    body = sections()[signature(SPECS[name])]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    assert blocks, f"the section for {name} has no ```python example"
    module = types.ModuleType(f"docs_example_{name}")
    exec(compile(blocks[0], f"docs/plugins.md:{name}", "exec"), module.__dict__)
    pm = new_plugin_manager()
    assert register_module(pm, module, "docs:example") == ""
    assert pm.hook.__dict__[name].get_hookimpls(), f"the example for {name} does not implement it"
    kind = {k.hook: k for k in KINDS.values()}.get(name)
    if kind:
        classes, error = collect_classes(pm, "docs:example", kind.name)
        assert not error and classes and all(issubclass(c, kind.base) for c in classes)
    elif name == "register_provider_types":
        from openshell.providers import ProviderType

        found = []
        pm.hook.register_provider_types(register=found.append)
        assert found and all(issubclass(c, ProviderType) for c in found)
    elif name == "register_commands":
        group = click.Group("openshell")
        pm.hook.register_commands(cli=group)
        assert group.commands
    else:
        args = {
            "gateway_started": {"gateway": GatewayEvent("default", "https://127.0.0.1:8080", 8080, "local", "/tmp/gw", 0.0)},
            "sandbox_created": {"sandbox": SandboxEvent("sb-1", "demo", phase="PROVISIONING")},
            "sandbox_deleted": {"sandbox": SandboxEvent("sb-1", "demo", phase="DELETING")},
            "policy_loaded": {"sandbox_id": "sb-1", "version": 3},
        }[name]
        getattr(pm.hook, name)(**args)


def test_no_heading_documents_a_hook_that_does_not_exist():
    hooky = {h for h in sections() if re.fullmatch(r"\w+\([\w, ]*\)", h)}
    assert hooky <= {signature(f) for f in SPECS.values()}, hooky - {signature(f) for f in SPECS.values()}
