"""``openshell term``: the terminal UI (:mod:`openshell_cli.tui`)."""

from __future__ import annotations

import click

from openshell_cli.session import GATEWAY_OPTION


@click.command("term")
@GATEWAY_OPTION
@click.option("--workspace", default="default", show_default=True, help="Workspace whose sandboxes are shown.")
def term(gateway: str | None, workspace: str) -> None:
    """Watch and steer sandboxes in a terminal UI (like k9s).

    The sandboxes view lists every sandbox live (phase, driver, age, policy
    revision, connections denied in the last minute); Enter opens one: its log stream
    with denials highlighted, its policy, providers and limits. Keys are shown
    in the footer: arrows or j/k move, Enter opens, Esc goes back, / filters,
    q quits; c connect, x exec, s stop/start, d delete, p set policy from a
    file, e explain the denial under the log cursor (else the newest), g/w switch gateway/workspace.
    NO_COLOR=1 turns colours off.

    \b
    Examples:
      openshell term
      openshell term --gateway staging --workspace team-a
    """
    from openshell_cli.tui.app import TermApp

    TermApp(gateway, workspace).run()


COMMANDS = [term]
