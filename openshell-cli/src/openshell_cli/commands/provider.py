"""``openshell provider create|list|get|update|delete|attach|detach|types``: named credential bundles.

Values go to the gateway (stored encrypted) and never come back: ``get`` and
``list`` show credential names only. Inside a sandbox each credential variable
holds ``openshell:resolve:env:NAME``; the proxy substitutes the value on
inspected requests to the hosts the provider's type declares.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from openshell_cli import agent_flow, session
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION, call

if TYPE_CHECKING:  # pragma: no cover - imported when used: the CLI starts fast
    from openshell.plugin.kinds import Agent
    from openshell.providers import ProviderType


def _types() -> dict[str, type[ProviderType]]:
    from openshell.plugin.loader import PluginError, get_registry
    from openshell.providers import provider_types

    try:
        return provider_types(get_registry())
    except PluginError as exc:
        raise CliError(str(exc)) from None


def _kv(pairs: Sequence[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def parse_credentials(specs: Sequence[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """Turn ``--credential`` values into ``{KEY: value}``.

    ``KEY=VALUE`` takes the value as given; ``KEY`` alone reads it from the
    environment variable ``KEY`` (keeps the secret out of shell history), or
    prompts without echo when it is unset and stdin is a terminal.

    :raises CliError: ``KEY`` unset and no terminal to ask on.
    """
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not key:
            raise CliError(f"--credential {spec!r} needs a name: KEY or KEY=VALUE")
        if not sep:
            value = environ.get(key, "")
            if not value:
                if not sys.stdin.isatty():
                    raise CliError(f"--credential {key}: ${key} is not set; export it or pass --credential {key}=VALUE")
                value = click.prompt(f"value for {key}", hide_input=True)
        out[key] = value
    return out


def provider_row(p: Any) -> dict[str, Any]:
    """One provider as a table/json row: credentials by name, never values."""
    return {
        "name": p.name,
        "type": p.type,
        "credentials": ",".join(p.credential_keys),
        "config": ",".join(f"{k}={v}" for k, v in sorted(p.config.items())),
    }


# --------------------------------------------------------------------------- group


@click.group("provider")
def provider() -> None:
    """Named credential bundles that sandboxes use without ever seeing the values.

    \b
    Examples:
      openshell provider create --name work --type anthropic --from-existing
      openshell provider create --name gh --type github --credential GITHUB_TOKEN
      openshell provider list
      openshell sandbox create --provider gh -- gh repo list
    """


@provider.command("create")
@click.option("--name", required=True, help="Provider name (lower-case letters, digits, '-').")
@click.option("--type", "type_", default="generic", show_default=True, help="Provider type (see 'openshell provider types').")
@click.option("--from-existing", is_flag=True, help="Take the type's variables (e.g. ANTHROPIC_API_KEY) from your environment.")
@click.option(
    "--credential", "credentials", multiple=True, metavar="KEY[=VALUE]", help="A credential; KEY alone reads $KEY (or asks without echo). Repeatable."
)
@click.option("--config", "configs", multiple=True, metavar="K=V", help="Non-secret setting, e.g. hosts=git.corp.example. Repeatable.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def provider_create(name, type_, from_existing, credentials, configs, gateway, output) -> None:
    """Create a provider; its values are stored only in the gateway (encrypted).

    \b
    Examples:
      openshell provider create --name work --type anthropic --from-existing
      openshell provider create --name ci --type generic --credential API_TOKEN --config hosts=api.example.com
    """
    from openshell.providers import discover_credentials

    types = _types()
    if type_ not in types:
        raise CliError(f"unknown provider type {type_!r}; installed types: {', '.join(types)} (see 'openshell provider types')")
    if from_existing == bool(credentials):
        raise CliError("give either --from-existing or --credential KEY[=VALUE] (one of them)")
    if from_existing:
        values = discover_credentials(types[type_], os.environ)
        if not values:
            wanted = ", ".join(types[type_].env_vars) or "nothing (generic takes --credential)"
            raise CliError(f"--from-existing: none of {wanted} is set in your environment; export one or use --credential")
    else:
        values = parse_credentials(credentials)
    client = session.client(gateway, start_local=True)
    created = call(client.create_provider, name, type_, values, config=_kv(configs, "--config"))
    click.echo(f"provider {created.name} created ({created.type}: {', '.join(created.credential_keys)})", err=True)
    if output != "table":
        render(created.to_dict(), output)


@provider.command("list")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def provider_list(gateway, output) -> None:
    """List providers (credential names only).

    \b
    Example:
      openshell provider list -o json
    """
    items = call(session.client(gateway).list_providers)
    if output == "table":
        render(
            [provider_row(p) for p in items],
            output,
            columns=["name", "type", "credentials", "config"],
            empty="no providers; create one with 'openshell provider create --name NAME --type TYPE --from-existing'",
        )
    else:
        render([p.to_dict() for p in items], output)


@provider.command("get")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def provider_get(name, gateway, output) -> None:
    """Show one provider; values are never shown (they stay in the gateway).

    \b
    Example:
      openshell provider get work -o yaml
    """
    p = call(session.client(gateway).get_provider, name)
    if output == "table":
        row = provider_row(p)
        row["credentials"] = ", ".join(f"{k}=<redacted>" for k in p.credential_keys)
        render(row, output, columns=["name", "type", "credentials", "config"])
    else:
        render(p.to_dict(), output)


@provider.command("update")
@click.argument("name")
@click.option("--from-existing", is_flag=True, help="Refresh the type's variables from your environment.")
@click.option("--credential", "credentials", multiple=True, metavar="KEY[=VALUE]", help="Set a credential (KEY alone reads $KEY).")
@click.option("--remove-credential", "remove_credentials", multiple=True, metavar="KEY", help="Remove a credential.")
@click.option("--config", "configs", multiple=True, metavar="K=V", help="Set a setting.")
@click.option("--remove-config", "remove_configs", multiple=True, metavar="K", help="Remove a setting.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def provider_update(name, from_existing, credentials, remove_credentials, configs, remove_configs, gateway) -> None:
    """Change a provider; running sandboxes' inference routes use the new credential at once.

    \b
    Example:
      openshell provider update work --credential ANTHROPIC_API_KEY
    """
    from openshell.providers import discover_credentials

    client = session.client(gateway)
    values = parse_credentials(credentials)
    if from_existing:
        current = call(client.get_provider, name)
        found = discover_credentials(_types().get(current.type) or _types()["generic"], os.environ)
        if not found:
            raise CliError(f"--from-existing: none of the variables of type '{current.type}' is set in your environment")
        values = {**found, **values}
    if not (values or remove_credentials or configs or remove_configs):
        raise CliError("nothing to change; give --credential, --from-existing, --config or --remove-*")
    p = call(
        client.update_provider, name, credentials=values, config=_kv(configs, "--config"), remove_credentials=remove_credentials, remove_config=remove_configs
    )
    click.echo(f"provider {p.name} updated ({', '.join(p.credential_keys)})", err=True)


@provider.command("delete")
@click.argument("names", nargs=-1, required=True)
@click.option("--allow-missing", is_flag=True, help="Succeed when a provider does not exist.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def provider_delete(names, allow_missing, gateway) -> None:
    """Delete providers (refused while a sandbox or the inference route uses one).

    \b
    Example:
      openshell provider delete work
    """
    client = session.client(gateway)
    for name in names:
        outcome = call(client.delete_provider, name, allow_missing=allow_missing)
        click.echo(f"provider {name} {'deleted' if outcome == 'COMPLETED' else 'did not exist'}", err=True)


@provider.command("types")
@OUTPUT_OPTION
def provider_types_cmd(output) -> None:
    """List installed provider types: the variables they read and the hosts their values may go to.

    \b
    Example:
      openshell provider types
    """
    rows = [
        {"name": n, "env_vars": ",".join(c.env_vars) or "(any)", "hosts": ",".join(_all_hosts(c)) or "(--config hosts=...)", "summary": c.summary}
        for n, c in _types().items()
    ]
    render(rows, output, columns=["name", "env_vars", "hosts"])


def _all_hosts(cls: Any) -> tuple[str, ...]:
    """The type's hosts, or the union of its per-variable hosts."""
    return tuple(cls.hosts) or tuple(dict.fromkeys(h for hosts in getattr(cls, "env_hosts", {}).values() for h in hosts))


@provider.command("attach")
@click.argument("name")
@click.option("--sandbox", required=True, help="The running sandbox.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def provider_attach(name, sandbox, gateway) -> None:
    """Attach provider NAME to a sandbox: commands started there afterwards see its variables.

    \b
    Example:
      openshell provider attach gh --sandbox dev
    """
    changed = call(session.client(gateway).set_sandbox_provider, sandbox, name, attach=True)
    click.echo(f"provider {name} {'attached to' if changed else 'was already attached to'} sandbox {sandbox}", err=True)


@provider.command("detach")
@click.argument("name")
@click.option("--sandbox", required=True, help="The running sandbox.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def provider_detach(name, sandbox, gateway) -> None:
    """Detach provider NAME from a sandbox: commands started there afterwards no longer see it.

    \b
    Example:
      openshell provider detach gh --sandbox dev
    """
    changed = call(session.client(gateway).set_sandbox_provider, sandbox, name, attach=False)
    click.echo(f"provider {name} {'detached from' if changed else 'was not attached to'} sandbox {sandbox}", err=True)


# --------------------------------------------------------------------------- for sandbox create


def apply_auto_providers(client: Any, agent_cls: type[Agent], explicit: Sequence[str]) -> list[str]:
    """Create or pick the providers agent ``agent_cls`` needs; return the names to attach.

    Uses ``openshell_cli.agent_flow.plan_providers`` (``openshell.providers.plan_auto_providers``):
    existing providers of the needed types are attached, missing ones are
    created from the user's environment (one stderr line each, naming the
    variables, never the values) and absent ones are warned about.
    """
    attach, create, warnings = agent_flow.plan_providers(agent_cls, client, list(explicit), agent_flow.environ())
    for pname, (ptype, values) in create.items():
        call(client.create_provider, pname, ptype, dict(values))
        click.echo(f"provider {pname} created from your environment ({', '.join(values)}) for agent {agent_cls.name}", err=True)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    return attach


COMMANDS = [provider]
