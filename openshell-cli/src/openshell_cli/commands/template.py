"""``openshell template create|list|get|delete``: reusable sandbox recipes.

A template holds environment variables, resource limits, a policy and an
image (for container drivers; the ``local`` driver refuses a sandbox made from
a template with one). ``openshell sandbox create --template NAME`` starts from
it; the sandbox's own --env, --cpu/--memory and --policy win.
"""

from __future__ import annotations

from typing import Any

import click

from openshell_cli import session
from openshell_cli.commands.sandbox import _kv, _limit_option, _read_policy
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION, call


def _row(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "image": t.image or "-",
        "env": ",".join(sorted(t.environment)),
        "cpu": t.cpu or "-",
        "memory": t.memory or "-",
        "policy": "custom" if t.policy_yaml else "default",
        "version": t.resource_version,
    }


COLUMNS = ["name", "image", "env", "cpu", "memory", "policy", "version"]


@click.group("template")
def template() -> None:
    """Sandbox templates: environment, limits, policy and image to start sandboxes from.

    \b
    Examples:
      openshell template create py --env LANG=C.UTF-8 --memory 1Gi --policy policy.yaml
      openshell template list
      openshell sandbox create --template py -- python3 -V
    """


@template.command("create")
@click.argument("name")
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Environment variable. Repeatable.")
@click.option("--cpu", callback=_limit_option, metavar="CORES", help="CPU limit in cores, e.g. 1.5 or 500m.")
@click.option("--memory", callback=_limit_option, metavar="SIZE", help="Memory limit, e.g. 512Mi or 2Gi.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), help="Policy YAML (default: the default policy).")
@click.option("--image", default="", help="Image, for container drivers (the local driver has none).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Label. Repeatable.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def template_create(name, envs, cpu, memory, policy_file, image, labels, gateway, output) -> None:
    """Store template NAME (lower-case letters, digits, '-')."""
    client = session.client(gateway, start_local=True)
    created = call(
        client.create_template,
        name,
        image=image,
        env=_kv(envs, "--env"),
        cpu=cpu or "",
        memory=memory or "",
        policy_yaml=_read_policy(policy_file) or "",
        labels=_kv(labels, "--label"),
    )
    click.echo(f"template {created.name} created (version {created.resource_version})", err=True)
    if output != "table":
        render(created.to_dict(), output)


@template.command("list")
@click.option("--selector", default="", metavar="SELECTOR", help="Only those whose labels match, e.g. team=x.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def template_list(selector, gateway, output) -> None:
    """List templates."""
    items = call(session.client(gateway).list_templates, label_selector=selector)
    if output == "table":
        render([_row(t) for t in items], output, columns=COLUMNS, empty="no templates; create one with 'openshell template create NAME --env K=V'")
    else:
        render([t.to_dict() for t in items], output)


@template.command("get")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def template_get(name, gateway, output) -> None:
    """Show template NAME (-o yaml shows its policy)."""
    t = call(session.client(gateway).get_template, name)
    render(_row(t) if output == "table" else t.to_dict(), output, columns=COLUMNS)


@template.command("delete")
@click.argument("names", nargs=-1, required=True)
@click.option("--allow-missing", is_flag=True, help="Succeed when one does not exist.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def template_delete(names, allow_missing, gateway) -> None:
    """Delete templates (sandboxes made from them keep running)."""
    client = session.client(gateway)
    for name in names:
        outcome = call(client.delete_template, name, allow_missing=allow_missing)
        click.echo(f"template {name} {'deleted' if outcome == 'COMPLETED' else 'did not exist'}", err=True)


COMMANDS = [template]
