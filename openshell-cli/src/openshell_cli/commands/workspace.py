"""``openshell workspace create|list|delete``: the gateway's workspaces.

Sandboxes, providers and templates belong to one workspace; ``default``
always exists. The CLI's other commands address ``default``; the SDK
addresses any workspace.
"""

from __future__ import annotations

import datetime

import click

from openshell_cli import session
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import GATEWAY_OPTION, call


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--label {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


@click.group("workspace")
def workspace() -> None:
    """Workspaces: separate sets of sandboxes, providers and templates.

    \b
    Examples:
      openshell workspace create team-a --label tier=dev
      openshell workspace list
      openshell workspace delete team-a
    """


@workspace.command("create")
@click.argument("name")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="A label. Repeatable.")
@GATEWAY_OPTION
def workspace_create(name, labels, gateway) -> None:
    """Create workspace NAME (lower-case letters, digits, '-')."""
    created = call(session.client(gateway, start_local=True).create_workspace, name, labels=_labels(labels))
    click.echo(f"workspace {created.name} created", err=True)


@workspace.command("list")
@click.option("--selector", default="", metavar="SELECTOR", help="Only those whose labels match, e.g. tier=dev.")
@GATEWAY_OPTION
@OUTPUT_OPTION
def workspace_list(selector, gateway, output) -> None:
    """List workspaces."""
    items = call(session.client(gateway).list_workspaces, label_selector=selector)
    if output == "table":
        rows = [
            {
                "name": w.name,
                "labels": ",".join(f"{k}={v}" for k, v in sorted(w.labels.items())),
                "created": datetime.datetime.fromtimestamp(w.created_at).strftime("%Y-%m-%d %H:%M"),
            }
            for w in items
        ]
        render(rows, output, columns=["name", "labels", "created"], empty="no workspaces match")
    else:
        render([w.to_dict() for w in items], output)


@workspace.command("delete")
@click.argument("name")
@click.option("--allow-missing", is_flag=True, help="Succeed when it does not exist.")
@GATEWAY_OPTION
def workspace_delete(name, allow_missing, gateway) -> None:
    """Delete the empty workspace NAME (its sandboxes, providers and templates go first)."""
    outcome = call(session.client(gateway).delete_workspace, name, allow_missing=allow_missing)
    click.echo(f"workspace {name} {'deleted' if outcome == 'COMPLETED' else 'did not exist'}", err=True)


COMMANDS = [workspace]
