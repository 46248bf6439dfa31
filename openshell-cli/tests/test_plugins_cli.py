"""``openshell plugins|agents|inference|isolation|drivers``.

The first half runs the commands in-process against registries the tests build.
The second half is the real-world check: a throwaway third-party agent plugin
and a broken one are pip-installed into a fresh venv next to the repo's core,
CLI and isolation plugins, and the ``openshell`` console script of that venv
must list the first, show the second as failed, keep working, and refuse to
run under ``OPENSHELL_STRICT_PLUGINS=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import types
import venv
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from openshell.plugin import loader
from openshell_cli.main import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    monkeypatch.delenv("OPENSHELL_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("OPENSHELL_DISABLE_PLUGINS", raising=False)
    loader.reset_registry()
    yield
    loader.reset_registry()


def use_registry(monkeypatch, *plugins) -> loader.Registry:
    reg = loader.Registry(loader.new_plugin_manager())
    for plugin in plugins:
        reg.register_plugin(plugin)
    monkeypatch.setattr(loader, "get_registry", lambda: reg)
    return reg


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------- in-process


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["agents", "list"], "no agent plugins installed; install one with: pip install openshell-plugin-claude"),
        (["inference", "backends"], "no inference backend plugins installed; install one with: pip install openshell-plugin-vllm"),
        (["isolation", "list"], "no isolation layers installed; install them with: pip install openshell-plugin-netns"),
        (["drivers", "list"], "no compute drivers installed"),
        (["plugins", "list"], "no plugins installed"),
    ],
)
def test_empty_lists_say_so_plainly(monkeypatch, args, sentence):
    use_registry(monkeypatch)
    result = invoke(*args)
    assert result.exit_code == 0
    assert sentence in result.output


def test_empty_list_as_json_is_an_empty_array(monkeypatch):
    use_registry(monkeypatch)
    result = invoke("agents", "list", "-o", "json")
    assert json.loads(result.output) == []


def _layers_module():
    module = types.ModuleType("cli_test_layers")
    exec(
        textwrap.dedent("""
        from openshell.plugin import IsolationLayer, ProbeResult, hookimpl

        class Fine(IsolationLayer):
            name = "fine"
            summary = "works"
            order = 40
            def probe(self):
                return ProbeResult(True, "ABI 7")
            def apply_in_child(self, ctx):
                pass

        class Grumpy(IsolationLayer):
            name = "grumpy"
            summary = "probe raises"
            order = 10
            def probe(self):
                raise OSError("no such syscall\\nmore")
            def apply_in_child(self, ctx):
                pass

        @hookimpl
        def register_isolation_layers(register):
            register(Fine)
            register(Grumpy)
    """),
        module.__dict__,
    )
    return module


def test_isolation_list_check_runs_probes_in_launch_order(monkeypatch):
    use_registry(monkeypatch, _layers_module())
    result = invoke("isolation", "list", "--check", "-o", "json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [(r["name"], r["order"], r["ok"], r["detail"]) for r in rows] == [
        ("grumpy", 10, False, "probe raised OSError: no such syscall"),
        ("fine", 40, True, "ABI 7"),
    ]


def test_isolation_list_without_check_does_not_probe(monkeypatch):
    use_registry(monkeypatch, _layers_module())
    result = invoke("isolation", "list")
    assert result.exit_code == 0
    assert "grumpy" in result.output and "no such syscall" not in result.output


def test_strict_failure_is_one_error_line_and_exit_1(monkeypatch):
    def boom():
        raise loader.PluginLoadError("plugin agents:x failed to load: ImportError: nope (OPENSHELL_STRICT_PLUGINS is set)")

    monkeypatch.setattr(loader, "get_registry", boom)
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert result.exit_code == 1
    assert "error: plugin agents:x failed to load: ImportError: nope" in result.output


@pytest.mark.parametrize("group", ["plugins", "isolation", "drivers", "agents", "inference"])
def test_every_group_help_has_an_example(group):
    result = invoke(group, "--help")
    assert result.exit_code == 0 and "Example:" in result.output and f"openshell {group}" in result.output


# --------------------------------------------------------------------------- real venv

HELLO = """
from openshell.plugin import Agent, hookimpl

OPENSHELL_PLUGIN_API = 1


class HelloAgent(Agent):
    name = "hello"
    summary = "A third-party agent from a throwaway distribution"
    package = "pip:openshell-plugin-hello"
    provider_types = ("anthropic",)

    def argv(self, extra=()):
        return ["echo", "hello", *extra]


@hookimpl
def register_agents(register):
    register(HelloAgent)
"""

KABOOM = """
raise RuntimeError("kaboom needs a GPU\\nand this second line is not shown")
"""


def write_dist(root: Path, dist: str, module: str, source: str, version: str) -> Path:
    """Write a minimal installable distribution declaring an ``openshell.agents`` entry point."""
    name = dist.removeprefix("openshell-plugin-")
    (root / "src" / module).mkdir(parents=True)
    (root / "src" / module / "__init__.py").write_text(source)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "{version}"
        dependencies = ["openshell-core"]

        [project.entry-points."openshell.agents"]
        {name} = "{module}"

        [tool.setuptools.packages.find]
        where = ["src"]
    """)
    )
    return root


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory) -> Path:
    """A fresh venv with the repo's core, isolation plugins and CLI, plus two throwaway plugins."""
    tmp = tmp_path_factory.mktemp("thirdparty")
    hello = write_dist(tmp / "hello", "openshell-plugin-hello", "openshell_plugin_hello", HELLO, "0.3.0")
    kaboom = write_dist(tmp / "kaboom", "openshell-plugin-kaboom", "openshell_plugin_kaboom", KABOOM, "0.0.1")
    venv.EnvBuilder(with_pip=True).create(tmp / "venv")
    bin_dir = tmp / "venv" / "bin"
    isolation = sorted(p.parent for p in (REPO / "openshell-plugins" / "isolation").glob("*/pyproject.toml"))
    editable = [REPO / "openshell-core", *isolation, REPO / "openshell-cli"]
    cmd = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for path in editable:
        cmd += ["-e", str(path)]
    cmd += [str(hello), str(kaboom)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env())
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return bin_dir


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSHELL_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(extra)
    return env


def run(venv_bin: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv_bin / "openshell"), *args], capture_output=True, text=True, timeout=120, env=_env(**env))


def test_thirdparty_agent_is_listed_by_agents_list(venv_bin):
    result = run(venv_bin, "agents", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["hello"]["status"] == "loaded"
    assert rows["hello"]["distribution"] == "openshell-plugin-hello"
    assert rows["hello"]["providers"] == "anthropic"
    assert rows["hello"]["package"] == "pip:openshell-plugin-hello"
    assert rows["kaboom"]["status"] == "failed"
    assert rows["kaboom"]["error"] == "RuntimeError: kaboom needs a GPU"

    table = run(venv_bin, "agents", "list")
    assert table.returncode == 0
    # PROGRAM: is the agent program installed (detect()); PROVIDER_STATUS: its credentials
    assert table.stdout.splitlines()[0].split() == ["NAME", "STATUS", "PROGRAM", "PROVIDER_STATUS", "ERROR"]
    assert rows["hello"]["installed"] is False and rows["hello"]["provider_status"].startswith("anthropic:")
    assert "hello" in table.stdout and "kaboom" in table.stdout


def test_plugins_list_json_shows_every_plugin_with_status(venv_bin):
    result = run(venv_bin, "plugins", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)}
    assert rows[("agents", "hello")] == {
        "name": "hello",
        "kind": "agents",
        "distribution": "openshell-plugin-hello",
        "version": "0.3.0",
        "status": "loaded",
        "error": "",
    }
    assert rows[("agents", "kaboom")]["status"] == "failed"
    assert rows[("agents", "kaboom")]["error"] == "RuntimeError: kaboom needs a GPU"
    for layer in ("netns", "landlock", "seccomp"):
        assert rows[("isolation", layer)]["status"] == "loaded"
    assert rows[("policy", "opa")]["status"] == "loaded"
    assert ("drivers", "local") in rows


@pytest.mark.parametrize("args", [["--help"], ["plugins", "list"], ["agents", "list"], ["isolation", "list"]])
def test_broken_plugin_does_not_break_the_cli(venv_bin, args):
    result = run(venv_bin, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if args != ["--help"]:
        warnings = [line for line in result.stderr.splitlines() if "kaboom" in line]
        assert len(warnings) == 1 and "RuntimeError: kaboom needs a GPU" in warnings[0]


def test_strict_mode_makes_the_broken_plugin_fatal(venv_bin):
    for args in (["plugins", "list"], ["agents", "list"]):
        result = run(venv_bin, *args, OPENSHELL_STRICT_PLUGINS="1")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert ("error: plugin agents:kaboom failed to load: RuntimeError: kaboom needs a GPU (OPENSHELL_STRICT_PLUGINS is set)") in result.stderr


def test_disabling_the_broken_plugin_silences_it(venv_bin):
    result = run(venv_bin, "plugins", "list", "-o", "json", OPENSHELL_DISABLE_PLUGINS="kaboom", OPENSHELL_STRICT_PLUGINS="1")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r["status"] for r in json.loads(result.stdout)}
    assert rows["kaboom"] == "disabled" and rows["hello"] == "loaded"
    assert "kaboom" not in result.stderr


def test_thirdparty_class_is_usable_from_code(venv_bin):
    code = "from openshell.plugin.loader import get_registry;print(get_registry().get_class('agents', 'hello')().argv(['--x']))"
    result = subprocess.run([str(venv_bin / "python"), "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['echo', 'hello', '--x']"


# --------------------------------------------------------------------------- plugin commands, on first need

_PROBE = (
    "import sys\n"
    "from openshell.plugin import loader\n"
    "from openshell_cli.main import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('plugins-loaded', loader.loaded_registry() is not None, 'kubernetes' in sys.modules, file=sys.stderr)\n"
)


@pytest.mark.parametrize(
    "args, loaded, shown",
    [
        (["--version"], False, "version"),
        (["sandbox", "--help"], False, "exec"),
        (["plugins", "--help"], False, "list"),
        (["images", "--help"], True, "Sandbox images of the docker compute driver"),  # the docker plugin's command
        (["--help"], True, "images"),  # the full list names plugin commands too
    ],
)
def test_plugins_load_only_when_a_command_needs_them(args, loaded, shown):
    """Loading every plugin imports their libraries (the kubernetes client: ~0.3 s); `sandbox exec` must not pay it."""
    import sys

    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120, env=_env())
    assert shown in p.stdout, p.stdout + p.stderr
    # (without plugins, not the kubernetes driver's client either; with them, it depends on what is installed)
    assert (f"plugins-loaded {loaded} " + ("" if loaded else "False")) in p.stderr, p.stderr


def _commands_plugin(name: str, hook):
    from openshell.plugin import hookimpl

    plugin = types.ModuleType(name)
    plugin.register_commands = hookimpl(hook)  # type: ignore[attr-defined]
    return plugin


def _root():
    from openshell_cli.main import RootGroup

    root = RootGroup("openshell")
    root.add_command(click.Command("sandbox", callback=lambda: click.echo("built-in")))
    root.builtins = frozenset(root.commands)
    return root


@pytest.mark.parametrize("failure", [RuntimeError("exploded"), SystemExit(7)])
def test_a_failing_register_commands_fails_its_plugin_only(monkeypatch, caplog, failure):
    def bad(cli):
        cli.add_command(click.Command("half", callback=lambda: None))  # taken out again
        raise failure

    reg = use_registry(
        monkeypatch,
        _commands_plugin("good_cmds", lambda cli: cli.add_command(click.Command("good", callback=lambda: click.echo("good ran")))),
        _commands_plugin("bad_cmds", bad),
    )
    root = _root()
    assert CliRunner().invoke(root, ["good"]).output == "good ran\n"  # whatever order the hooks run in
    assert "half" not in root.commands
    info = {i.key: i for i in reg.infos}["manual:bad_cmds"]
    assert info.status == "failed" and info.error.startswith("register_commands raised "), info
    assert ("sys.exit()" if isinstance(failure, SystemExit) else "RuntimeError: exploded") in info.error
    assert [r for r in caplog.records if "manual:bad_cmds" in r.getMessage()], caplog.text  # named in a warning
    assert {i.key: i for i in reg.infos}["manual:good_cmds"].status == "loaded"


def test_strict_mode_ends_the_cli_on_a_failing_register_commands(monkeypatch):
    use_registry(monkeypatch, _commands_plugin("bad_cmds", lambda cli: 1 / 0))
    monkeypatch.setenv("OPENSHELL_STRICT_PLUGINS", "1")
    result = CliRunner().invoke(_root(), ["nosuch"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: plugin manual:bad_cmds failed to load: register_commands raised ZeroDivisionError: division by zero" in result.output


def test_a_plugin_command_never_replaces_a_built_in_one(monkeypatch, caplog):
    @click.command("sandbox")
    def fake_sandbox() -> None:
        click.echo("plugin's")

    @click.command("extra")
    def extra() -> None:
        click.echo("extra ran")

    use_registry(monkeypatch, _commands_plugin("cli_test_commands", lambda cli: (cli.add_command(fake_sandbox), cli.add_command(extra))))
    root = _root()
    assert CliRunner().invoke(root, ["sandbox"]).output == "built-in\n"
    assert not root.plugins_added  # a built-in command: no plugin asked
    assert CliRunner().invoke(root, ["extra"]).output == "extra ran\n"
    assert CliRunner().invoke(root, ["sandbox"]).output == "built-in\n"
    assert "plugin manual:cli_test_commands: command 'sandbox' not added: a built-in command has that name" in caplog.text
