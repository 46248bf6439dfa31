"""openshell.plugin.testing: fixtures, registered(), and the contract classes."""

from __future__ import annotations

import types

import pytest
from openshell.plugin import Agent, hookimpl, loader
from openshell.plugin.testing import (
    AgentContract,
    ComputeDriverContract,
    InferenceBackendContract,
    IsolationLayerContract,
    PolicyEngineContract,
    registered,
)

TEST_GROUPS = {kind: f"openshell_test.{kind}" for kind in loader.KINDS}


def run_contract(contract: type, plugin_class: type) -> dict[str, str]:
    """Run every test_* method of ``contract`` against ``plugin_class``; return failures."""
    bound = type("Bound", (contract,), {"plugin_class": plugin_class, "entry_point_groups": TEST_GROUPS})()
    failures = {}
    for attr in sorted(dir(bound)):
        if attr.startswith("test_"):
            try:
                getattr(bound, attr)()
            except Exception as exc:  # noqa: BLE001 - a real run reports errors as failures too
                failures[attr] = str(exc)
    return failures


def install(make_dist, agent_src, name: str, module: str, src: str | None = None, ep_name: str | None = None) -> type:
    import importlib

    make_dist(f"dist-{module}", {"agents": {ep_name or name: module}}, {module: src or agent_src(name)})
    return importlib.import_module(module).Plugin


def test_contract_passes_for_a_well_behaved_agent(make_dist, agent_src):
    cls = install(make_dist, agent_src, "tidy", "tidy_plugin")
    assert run_contract(AgentContract, cls) == {}


def test_contract_catches_entry_point_name_differing_from_name(make_dist, agent_src):
    cls = install(make_dist, agent_src, "tidy", "renamed_plugin", ep_name="other")
    failures = run_contract(AgentContract, cls)
    assert set(failures) == {"test_entry_point_name_equals_name"}
    assert "'other'" in failures["test_entry_point_name_equals_name"]


def test_contract_catches_io_during_registration(make_dist, agent_src):
    src = agent_src("dialer").replace("    register(Plugin)", "    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    register(Plugin)")
    cls = install(make_dist, agent_src, "dialer", "dialer_plugin", src)
    failures = run_contract(AgentContract, cls)
    assert set(failures) == {"test_registration_does_no_io_and_registers_the_class"}
    assert "must not do I/O" in failures["test_registration_does_no_io_and_registers_the_class"]


def test_contract_catches_a_hook_argument_default(make_dist, agent_src):
    src = agent_src("lax").replace("def register_agents(register):", "def register_agents(register=None):")
    cls = install(make_dist, agent_src, "lax", "lax_plugin", src)
    failures = run_contract(AgentContract, cls)
    assert "test_hook_arguments_have_no_defaults" in failures
    assert "test_registration_does_no_io_and_registers_the_class" in failures


def test_contract_catches_missing_summary_and_abstract_methods(make_dist, agent_src):
    src = agent_src("bare").replace('    summary = "test plugin bare"\n', "").replace("    def argv(", "    def _argv(")
    cls = install(make_dist, agent_src, "bare", "bare_plugin", src)
    failures = run_contract(AgentContract, cls)
    assert {"test_name_and_summary_are_set", "test_abstract_methods_are_implemented"} <= set(failures)
    assert "argv" in failures["test_abstract_methods_are_implemented"]


def test_contract_without_an_entry_point_says_how_to_declare_one():
    class Orphan(Agent):
        name = "orphan"
        summary = "no entry point"

        def argv(self, extra=()):
            return ["orphan", *extra]

    failures = run_contract(AgentContract, Orphan)
    assert 'declare it in pyproject.toml: [project.entry-points."openshell_test.agents"]' in failures["test_entry_point_name_equals_name"]


def test_every_kind_has_a_contract_class():
    contracts = [AgentContract, InferenceBackendContract, IsolationLayerContract, PolicyEngineContract, ComputeDriverContract]
    assert sorted(c.kind for c in contracts) == sorted(loader.KINDS)
    assert not any(c.__name__.startswith("Test") for c in contracts)  # pytest must not collect the bases


def test_plugin_manager_fixture_is_fresh_and_has_every_hookspec(plugin_manager):
    assert plugin_manager.project_name == "openshell"
    assert plugin_manager.get_plugins() == set()
    assert plugin_manager.hook.register_agents.has_spec()


def test_registered_adds_and_removes_classes_and_hooks(agent_src):
    module = types.ModuleType("temp_agent_mod")
    exec(agent_src("temp"), module.__dict__)
    seen = []

    class Listener:
        @hookimpl
        def sandbox_created(self, sandbox):
            seen.append(sandbox)

    reg = loader.Registry(loader.new_plugin_manager())
    with registered(module, Listener(), registry=reg) as r:
        assert r is reg
        assert reg.get_class("agents", "temp").name == "temp"
        reg.hook.sandbox_created(sandbox="sb-1")
    assert seen == ["sb-1"]
    assert reg.classes("agents") == {} and reg.pm.get_plugins() == set()
    reg.hook.sandbox_created(sandbox="sb-2")
    assert seen == ["sb-1"]


def test_registered_uses_the_process_registry_by_default(agent_src, monkeypatch):
    monkeypatch.setenv("OPENSHELL_DISABLE_PLUGINS", "agents:temp2")  # keep the real ones out of the way
    module = types.ModuleType("temp2_mod")
    exec(agent_src("temp2"), module.__dict__)
    with registered(module):
        assert loader.get_registry().get_class("agents", "temp2")
    with pytest.raises(loader.PluginNotFound):
        loader.get_registry().get_class("agents", "temp2")


def test_registered_rejects_a_bad_plugin_and_leaves_nothing_behind():
    class Bad:
        @hookimpl
        def register_agents(self, register):
            register(object)

    reg = loader.Registry(loader.new_plugin_manager())
    with pytest.raises(loader.PluginLoadError, match="is not a subclass"):
        with registered(Bad(), registry=reg):
            pass  # pragma: no cover
    assert reg.pm.get_plugins() == set() and reg.infos == []
