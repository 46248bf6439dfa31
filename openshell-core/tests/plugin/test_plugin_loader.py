"""The loader: discovery without imports, failure isolation, strict/disable, API version."""

from __future__ import annotations

import logging
import sys

import pytest
from openshell.plugin import Agent, loader
from openshell.plugin.loader import (
    PluginLoadError,
    PluginNotFound,
    Registry,
    get_registry,
    list_entry_points,
    reset_registry,
    select,
)

#: the same test-only groups conftest's make_dist writes entry points to
TEST_GROUPS = {kind: f"openshell_test.{kind}" for kind in loader.KINDS}


def load(**kwargs) -> Registry:
    return Registry.load(groups=TEST_GROUPS, **kwargs)


def test_list_entry_points_reads_metadata_without_importing(make_dist):
    make_dist("acme-agent", {"agents": {"acme": "acme_never_imported"}}, {"acme_never_imported": "raise SystemExit(3)"}, version="2.5")
    infos = list_entry_points("agents", groups=TEST_GROUPS)
    assert [(i.kind, i.name, i.distribution, i.version, i.module, i.status) for i in infos] == [
        ("agents", "acme", "acme-agent", "2.5", "acme_never_imported", "available")
    ]
    assert "acme_never_imported" not in sys.modules


def test_list_entry_points_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown plugin kind 'agent'"):
        list_entry_points("agent")


def test_loaded_agent_plugin_registers_its_class(make_dist, agent_src):
    make_dist("good", {"agents": {"good": "good_plugin"}}, {"good_plugin": agent_src("good")})
    reg = load()
    (info,) = reg.infos
    assert (info.status, info.error, info.classes) == ("loaded", "", ("agents:good",))
    cls = reg.get_class("agents", "good")
    assert issubclass(cls, Agent) and cls.name == "good"
    assert reg.classes("agents") == {"good": cls}
    assert reg.pm.get_plugin("agents:good") is sys.modules["good_plugin"]


def test_failing_import_is_shown_failed_and_the_others_still_load(make_dist, agent_src, caplog):
    make_dist("broken", {"agents": {"broken": "broken_plugin"}}, {"broken_plugin": "raise ImportError('no module named flux\\nsecond line')"})
    make_dist("good", {"agents": {"good": "good_plugin"}}, {"good_plugin": agent_src("good")})
    with caplog.at_level(logging.WARNING, logger="openshell.plugin"):
        reg = load()
    status = {i.name: (i.status, i.error) for i in reg.infos}
    assert status["broken"] == ("failed", "ImportError: no module named flux")
    assert status["good"] == ("loaded", "")
    warnings = [r.getMessage() for r in caplog.records if r.name == "openshell.plugin"]
    assert len(warnings) == 1 and "agents:broken" in warnings[0] and "\n" not in warnings[0]
    with pytest.raises(PluginNotFound, match="failed to load: ImportError: no module named flux"):
        reg.get_class("agents", "broken")


def test_strict_mode_makes_a_load_failure_fatal(make_dist, monkeypatch):
    make_dist("broken", {"agents": {"broken": "broken_plugin"}}, {"broken_plugin": "raise RuntimeError('kaput')"})
    with pytest.raises(PluginLoadError, match=r"plugin agents:broken failed to load: RuntimeError: kaput \(OPENSHELL_STRICT_PLUGINS is set\)"):
        load(strict=True)
    monkeypatch.setenv("OPENSHELL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        load()


@pytest.mark.parametrize("spec", ["broken", "agents:broken", " other , broken "])
def test_disabled_plugin_is_never_imported(make_dist, monkeypatch, spec):
    make_dist("broken", {"agents": {"broken": "broken_plugin"}}, {"broken_plugin": "raise RuntimeError('imported!')"})
    monkeypatch.setenv("OPENSHELL_DISABLE_PLUGINS", spec)
    reg = load(strict=True)  # disabled is not a failure, even in strict mode
    (info,) = reg.infos
    assert (info.status, info.error) == ("disabled", "")
    assert "broken_plugin" not in sys.modules
    with pytest.raises(PluginNotFound, match="disabled by OPENSHELL_DISABLE_PLUGINS"):
        reg.get_class("agents", "broken")


def test_disable_by_kind_name_leaves_same_name_of_other_kind(make_dist, agent_src, monkeypatch):
    make_dist("two", {"agents": {"x": "x_agent"}, "inference": {"x": "x_backend"}}, {"x_agent": agent_src("x"), "x_backend": ""})
    monkeypatch.setenv("OPENSHELL_DISABLE_PLUGINS", "inference:x")
    reg = load()
    assert {i.key: i.status for i in reg.infos} == {"agents:x": "loaded", "inference:x": "disabled"}


def test_class_of_the_wrong_abc_marks_the_plugin_failed(make_dist, agent_src):
    make_dist("wrong", {"agents": {"wrong": "wrong_plugin"}}, {"wrong_plugin": agent_src("wrong", base="IsolationLayer")})
    reg = load()
    (info,) = reg.infos
    assert info.status == "failed"
    assert "is not a subclass of openshell.plugin.Agent" in info.error
    assert reg.classes("agents") == {}
    assert reg.pm.get_plugin("agents:wrong") is None  # its other hooks must not run


def test_registering_an_instance_instead_of_a_class_fails(make_dist, agent_src):
    src = agent_src("inst").replace("register(Plugin)", "register(Plugin())")
    make_dist("inst", {"agents": {"inst": "inst_plugin"}}, {"inst_plugin": src})
    (info,) = load().infos
    assert info.status == "failed" and "is not a subclass" in info.error


def test_incompatible_api_version_is_skipped_with_one_clear_line(make_dist, agent_src, caplog):
    make_dist("future", {"agents": {"future": "future_plugin"}}, {"future_plugin": "OPENSHELL_PLUGIN_API = 2\n" + agent_src("future")})
    with caplog.at_level(logging.WARNING, logger="openshell.plugin"):
        reg = load()
    (info,) = reg.infos
    assert info.status == "failed"
    assert info.error.startswith("incompatible plugin API: the plugin needs API 2, this openshell-core provides 1")
    records = [r for r in caplog.records if r.name == "openshell.plugin"]
    assert len(records) == 1 and records[0].exc_info is None
    assert reg.classes("agents") == {}


def test_same_major_api_version_loads(make_dist, agent_src):
    make_dist("now", {"agents": {"now": "now_plugin"}}, {"now_plugin": "OPENSHELL_PLUGIN_API = '1.3'\n" + agent_src("now")})
    assert load().get_class("agents", "now").name == "now"


def test_check_pending_catches_a_misspelt_hook(make_dist, agent_src):
    src = agent_src("typo").replace("def register_agents(", "def register_agent(")
    make_dist("typo", {"agents": {"typo": "typo_plugin"}}, {"typo_plugin": src})
    (info,) = load().infos
    assert info.status == "failed"
    assert "unknown hook 'register_agent'" in info.error


def test_hook_argument_with_a_default_fails(make_dist, agent_src):
    src = agent_src("dflt").replace("def register_agents(register):", "def register_agents(register=None):")
    make_dist("dflt", {"agents": {"dflt": "dflt_plugin"}}, {"dflt_plugin": src})
    (info,) = load().infos
    assert info.status == "failed"
    assert "gives argument(s) register a default" in info.error


def test_registration_hook_raising_fails_only_that_plugin(make_dist, agent_src):
    src = agent_src("boom").replace("    register(Plugin)", "    raise ConnectionError('registration must not dial out')")
    make_dist("boom", {"agents": {"boom": "boom_plugin"}}, {"boom_plugin": src})
    make_dist("good", {"agents": {"good": "good_plugin"}}, {"good_plugin": agent_src("good")})
    reg = load()
    assert {i.name: i.status for i in reg.infos} == {"boom": "failed", "good": "loaded"}
    assert reg.info("agents", "boom").error == "ConnectionError: registration must not dial out"


def test_sys_exit_at_import_does_not_end_the_process(make_dist):
    make_dist("quitter", {"agents": {"quitter": "quitter_plugin"}}, {"quitter_plugin": "import sys; sys.exit('bye')"})
    (info,) = load().infos
    assert (info.status, info.error) == ("failed", "SystemExit: bye")


def test_printing_at_import_keeps_stdout_clean(make_dist, agent_src, capsys):
    make_dist("chatty", {"agents": {"chatty": "chatty_plugin"}}, {"chatty_plugin": "print('hello from import')\n" + agent_src("chatty")})
    load()
    out, err = capsys.readouterr()
    assert out == "" and "hello from import" in err


def test_same_class_name_from_two_plugins_fails_the_second(make_dist, agent_src):
    make_dist("a", {"agents": {"a": "dup_a"}}, {"dup_a": agent_src("same")})
    make_dist("b", {"agents": {"b": "dup_b"}}, {"dup_b": agent_src("same")})
    reg = load()
    assert {i.name: i.status for i in reg.infos} == {"a": "loaded", "b": "failed"}
    assert "'same' is already registered by plugin agents:a" in reg.info("agents", "b").error


def test_get_class_names_installed_alternatives_and_how_to_install(make_dist, agent_src):
    make_dist("good", {"agents": {"good": "good_plugin"}}, {"good_plugin": agent_src("good")})
    with pytest.raises(LookupError) as exc:
        load().get_class("agents", "claude")
    assert str(exc.value) == ("agent 'claude' is not installed (installed: good); install it with: pip install openshell-plugin-claude")


def test_require_fails_closed_naming_the_load_error(make_dist):
    make_dist("wall", {"isolation": {"wall": "wall_plugin"}}, {"wall_plugin": "raise OSError('landlock ABI too old')"})
    reg = load()
    with pytest.raises(PluginLoadError, match="isolation layer 'wall' .*failed to load: OSError: landlock ABI too old; the sandbox cannot start"):
        reg.require("isolation", "wall")
    with pytest.raises(PluginNotFound, match="isolation layer 'moat' is not installed"):
        reg.require("isolation", "moat")


def test_require_fails_when_a_loaded_plugin_registers_no_class(make_dist):
    make_dist("empty", {"policy": {"empty": "empty_plugin"}}, {"empty_plugin": ""})
    reg = load()
    assert reg.info("policy", "empty").status == "loaded"
    with pytest.raises(PluginLoadError, match="registers no class named 'empty'"):
        reg.require("policy", "empty")


ENGINE = """
from openshell.plugin import PolicyEngine, hookimpl

class Engine(PolicyEngine):
    name = {name!r}
    summary = "test engine"
    def load(self, policy, version=0): ...
    def decide_connect(self, compiled, inp): ...

@hookimpl
def register_policy_engines(register):
    register(Engine)
"""


def test_select_loads_only_the_named_plugin(make_dist):
    make_dist(
        "eng",
        {"policy": {"eng": "eng_plugin", "bad": "bad_engine"}},
        {"eng_plugin": ENGINE.format(name="eng"), "bad_engine": "raise ImportError('regopy missing')"},
    )
    cls = select("policy", "eng", groups=TEST_GROUPS)
    assert cls.name == "eng"
    assert "bad_engine" not in sys.modules
    with pytest.raises(PluginLoadError, match="policy engine 'bad' failed to load: ImportError: regopy missing"):
        select("policy", "bad", groups=TEST_GROUPS)
    with pytest.raises(PluginNotFound, match=r"policy engine 'rego' is not installed \(installed: bad, eng\)"):
        select("policy", "rego", groups=TEST_GROUPS)


def test_select_refuses_a_disabled_plugin(make_dist, monkeypatch):
    make_dist("eng", {"policy": {"eng": "eng_plugin"}}, {"eng_plugin": ENGINE.format(name="eng")})
    monkeypatch.setenv("OPENSHELL_DISABLE_PLUGINS", "policy:eng")
    with pytest.raises(PluginLoadError, match="disabled"):
        select("policy", "eng", groups=TEST_GROUPS)


def test_select_module_validates_like_select_without_scanning(make_dist, monkeypatch):
    make_dist("eng", {}, {"eng_plugin2": ENGINE.format(name="eng"), "bad_engine2": "raise ImportError('regopy missing')"})
    monkeypatch.setattr(loader, "list_entry_points", lambda *a, **k: pytest.fail("select_module scanned the distributions"))
    assert loader.select_module("policy", "eng", "eng_plugin2").name == "eng"
    with pytest.raises(PluginLoadError, match="policy engine 'eng' failed to load from 'bad_engine2': ImportError: regopy missing"):
        loader.select_module("policy", "eng", "bad_engine2")
    with pytest.raises(PluginLoadError, match="registers no class named 'other'"):
        loader.select_module("policy", "other", "eng_plugin2")
    monkeypatch.setenv("OPENSHELL_DISABLE_PLUGINS", "policy:eng")
    with pytest.raises(PluginLoadError, match="disabled"):
        loader.select_module("policy", "eng", "eng_plugin2")


def test_select_takes_resolved_entry_points_and_refuses_bad_ones(make_dist, monkeypatch):
    make_dist("eng", {}, {"eng_plugin3": ENGINE.format(name="eng")})
    with pytest.raises(ValueError, match="kind:name"):
        loader.use_resolved_entry_points({"eng": "eng_plugin3"})
    loader.use_resolved_entry_points({"policy:eng": "eng_plugin3"})
    try:
        from openshell.plugin import _managers

        monkeypatch.setattr(_managers, "Driver", lambda *a, **k: pytest.fail("select scanned a resolved plugin"))
        assert select("policy", "eng").name == "eng"  # the real groups: not installed there, found by its module
    finally:
        loader.use_resolved_entry_points({})


def test_get_registry_is_cached_until_reset(monkeypatch):
    calls = []
    monkeypatch.setattr(loader.Registry, "load", classmethod(lambda cls, **kw: calls.append(1) or cls(loader.new_plugin_manager())))
    first = get_registry()
    assert get_registry() is first and len(calls) == 1
    reset_registry()
    assert get_registry() is not first and len(calls) == 2


def test_register_plugin_by_hand_and_remove_it(agent_src):
    import types

    module = types.ModuleType("manual_mod")
    exec(agent_src("handmade"), module.__dict__)
    reg = Registry(loader.new_plugin_manager())
    info = reg.register_plugin(module)
    assert info.classes == ("agents:handmade",) and info.key == "manual:manual_mod"
    assert reg.get_class("agents", "handmade").name == "handmade"
    reg.unregister_plugin(info.key)
    assert reg.classes("agents") == {} and reg.infos == []


def test_unknown_plugin_name_gets_no_pip_install_suggestion():
    # A typo must not be turned into "pip install openshell-plugin-<typo>" (typosquatting).
    from openshell.plugin.loader import install_hint

    assert "pip install" not in install_hint("claud")
    assert install_hint("claude") == "install it with: pip install openshell-plugin-claude"


# --------------------------------------------------------------------------- binding by name


class _Bot(Agent):
    name = "bot"
    summary = "a test agent"

    def argv(self, extra=()):
        return ["bot", *extra]


def test_registration_hook_taking_a_subset_of_the_arguments_still_loads(monkeypatch):
    """A hook that gains an argument in a later release keeps working for plugins
    written against the old signature: arguments are passed by name."""
    import types

    import pluggy
    from openshell.plugin import hookimpl

    spec_marker = pluggy.HookspecMarker("openshell")
    newer = types.ModuleType("newer_hookspecs")

    @spec_marker
    def register_agents(register, workspace):
        """Register agent classes by calling ``register(cls)``."""

    newer.register_agents = register_agents
    monkeypatch.setattr(loader, "registration_arguments", lambda register: {"register": register, "workspace": "w1"})

    seen = []

    class OldPlugin:  # written before ``workspace`` existed
        @hookimpl
        def register_agents(self, register):
            register(_Bot)

    class NewPlugin:  # asks for both, in the other order
        @hookimpl
        def register_agents(self, workspace, register):
            seen.append(workspace)

    pm = pluggy.PluginManager("openshell")
    pm.add_hookspecs(newer)
    assert loader.register_module(pm, OldPlugin(), "old") == ""
    assert loader.register_module(pm, NewPlugin(), "new") == ""
    assert loader.collect_classes(pm, "old", "agents") == ([_Bot], "")
    assert loader.collect_classes(pm, "new", "agents") == ([], "")
    assert seen == ["w1"]


def test_registration_hook_without_arguments_loads_and_registers_nothing():
    from openshell.plugin import hookimpl

    class Quiet:
        @hookimpl
        def register_agents(self):
            pass

    reg = Registry(loader.new_plugin_manager())
    info = reg.register_plugin(Quiet(), name="test:quiet")
    assert info.status == "loaded" and info.classes == ()


def test_every_exported_name_resolves_to_what_it_names():
    import types

    import openshell.plugin as api
    from openshell.policy.decide import decide as decide_function

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert api.decide is decide_function  # the function, not the module of the same name
    assert isinstance(api.nsutil, types.ModuleType) and api.nsutil.netns_path("x")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018
