"""Root of the ``openshell`` CLI: ``openshell <noun> <verb>``.

Command groups live in ``openshell_cli.commands.<noun>``; plugins add more
through the ``register_commands(cli)`` hook.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click
from openshell.client.sdk import OpenShellError

from openshell_cli.errors import CliError

#: command modules, each exposing a click command or group named ``cli``
COMMAND_MODULES = ("plugins", "gateway", "gateway_add", "sandbox", "policy", "ssh", "forward", "provider", "template", "workspace", "term", "completion")

DEBUG_FLAG = "--debug"


def split_debug(args: list[str]) -> tuple[bool, list[str]]:
    """Find ``--debug`` anywhere before ``--``: ``(given, args without it)``.

    Arguments after ``--`` belong to the command run in the sandbox and are kept as they are.
    """
    cut = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:cut] if a != DEBUG_FLAG]
    return len(head) != cut, head + args[cut:]


class RootGroup(click.Group):
    """The ``openshell`` group; ``--debug`` may follow the subcommand (``openshell sandbox list --debug``).

    Plugin commands (the ``register_commands`` hook) are added on first need: a
    command name that is not built in, or the list of all commands (``--help``,
    shell completion, ``plugins list``). Loading the plugins imports every one of
    them and what they import (the kubernetes driver's client library alone:
    ~0.3 s), which a built-in command like ``sandbox exec`` never needs. A plugin
    command never replaces a built-in one.
    """

    builtins: frozenset[str] = frozenset()  # set once the built-in commands are added
    plugins_added = False
    _adding_for = ""  # the plugin whose register_commands runs now

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        debug, rest = split_debug(list(args))
        return super().parse_args(ctx, [DEBUG_FLAG, *rest] if debug else rest)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and not self.plugins_added:
            self.add_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name in self.builtins:
            who = f"plugin {self._adding_for}" if self._adding_for else "a plugin"
            logging.getLogger("openshell.cli").warning("%s: command %r not added: a built-in command has that name", who, name)
            return
        super().add_command(cmd, name)

    def add_plugin_commands(self) -> None:
        """Run every plugin's ``register_commands`` once, each on its own.

        A plugin whose hook raises (or calls ``sys.exit``) is marked failed, like a
        plugin that does not import: a warning names it, the commands it added so
        far are taken out, the others' commands stay. With ``OPENSHELL_STRICT_PLUGINS``
        set, any failure ends the CLI with one line (exit 1).
        """
        if self.plugins_added:
            return
        self.plugins_added = True
        from openshell.plugin.loader import PluginError, get_registry, strict_mode

        try:
            reg = get_registry()
            # pluggy's order (last registered first), but one call per plugin: a
            # failing hook must not keep the others' commands out.
            for impl in reversed(reg.pm.hook.register_commands.get_hookimpls()):
                before = set(self.commands)
                self._adding_for = impl.plugin_name
                try:
                    impl.function(**{arg: self for arg in impl.argnames})
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin fails, not the CLI
                    for name in set(self.commands) - before:
                        del self.commands[name]
                    what = "sys.exit()" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    reg.fail_plugin(impl.plugin_name, f"register_commands raised {what}".rstrip(": "))
                finally:
                    self._adding_for = ""
        except PluginError as exc:  # strict mode: fatal, one line
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - shown, not fatal (unless strict)
            if strict_mode():
                click.echo(f"error: {exc}", err=True)
                sys.exit(1)
            logging.getLogger("openshell.cli").warning("plugin commands not loaded: %s", exc)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(DEBUG_FLAG, is_flag=True, help="Show tracebacks and debug logs (anywhere on the command line).")
@click.version_option(package_name="openshell-cli", prog_name="openshell")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """OpenShell: run AI agents in sandboxes whose filesystem, syscalls and
    network egress follow a declarative policy.

    \b
    Quick start (README.md: the test host the policy names):
      python -m openshell.testhost up 10.199.1.2 &
      openshell sandbox create --policy examples/quickstart/policy.yaml \\
          --add-host up.example.test:10.199.1.2 -- curl -sS http://up.example.test:8080/
      openshell sandbox list
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _add_commands() -> None:
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"openshell_cli.commands.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"openshell_cli.commands.{mod_name}":
                continue
            raise
        for command in getattr(mod, "COMMANDS", ()):
            cli.add_command(command)


_add_commands()
cli.builtins = frozenset(cli.commands)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and exit.

    Exit codes: 0 ok, 1 user error, 2 usage error, 130 Ctrl-C.
    """
    debug = split_debug(list(argv if argv is not None else sys.argv[1:]))[0]
    # Before any plugin loads (a plugin command, --help): its warnings look like every other.
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if os.environ.get("_OPENSHELL_COMPLETE"):
        logging.disable(logging.WARNING)  # completing a word: a warning would land on the prompt
    try:
        cli.main(args=argv, prog_name="openshell", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except OpenShellError as exc:
        # The SDK's errors already name the problem and the fix: a user error.
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if debug:
            raise
        click.echo(f"error: {exc} (run with --debug for details)", err=True)
        sys.exit(1)
    sys.exit(0)


__all__ = ["CliError", "cli", "main"]
