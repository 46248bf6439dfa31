"""``openshell completion bash|zsh|fish``: the shell completion script (click's own)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

#: environment variable click's completion protocol uses for the ``openshell`` program
COMPLETE_VAR = "_OPENSHELL_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (what _OPENSHELL_COMPLETE=SHELL_source openshell prints).

    \b
    Examples:
      eval "$(openshell completion bash)"                 # in ~/.bashrc
      eval "$(openshell completion zsh)"                  # in ~/.zshrc
      openshell completion fish > ~/.config/fish/completions/openshell.fish
    """
    comp_cls = get_completion_class(shell)
    assert comp_cls is not None  # the Choice above lists only shells click supports
    root = ctx.find_root().command
    source = comp_cls(root, {}, "openshell", COMPLETE_VAR).source()
    click.echo(source, nl=not source.endswith("\n"))


COMMANDS = [completion]
