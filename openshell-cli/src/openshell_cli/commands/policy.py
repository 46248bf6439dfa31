"""``openshell policy validate|default|explain``: offline policy tools (POLICY.md).

Nothing here talks to a gateway: ``validate`` checks a file, ``default`` prints
the policy a sandbox gets without one, ``explain`` runs one connection (and
optionally one HTTP request) through the policy engine and destination safety
exactly as the sandbox proxy would, with the resolved addresses given on the
command line instead of looked up.
"""

from __future__ import annotations

from typing import Any

import click

from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render


def _engine_class() -> type:
    """Return the ``opa`` engine class: through the plugin registry, like the supervisor."""
    try:
        from openshell.plugin.loader import get_registry
    except ModuleNotFoundError:  # older core without the loader: the engine directly
        from openshell_plugin_opa import OpaEngine

        return OpaEngine
    try:
        return get_registry().get_class("policy", "opa")
    except Exception as exc:  # noqa: BLE001 - PluginNotFound / PluginLoadError, shown as one line
        raise CliError(f"policy engine 'opa' is not available: {exc}") from None


def _read(path: str) -> bytes:
    with click.open_file(path, "rb") as fh:
        return fh.read()


def _load_policy(path: str):
    from openshell.policy import PolicyError, parse_policy

    try:
        return parse_policy(_read(path))
    except PolicyError as exc:
        more = f" (and {len(exc.errors) - 1} more; see 'openshell policy validate {path}')" if len(exc.errors) > 1 else ""
        raise CliError(f"{path}: {exc}{more}") from None


@click.group("policy")
def policy() -> None:
    """Check, print and explain sandbox policies.

    \b
    Examples:
      openshell policy validate policy.yaml
      openshell policy default > policy.yaml
      openshell policy explain --policy policy.yaml --binary /usr/bin/curl \\
          --host api.github.com --port 443 --resolved 140.82.112.6
    """


@policy.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def validate(file: str) -> None:
    """Validate FILE offline; print "valid" or every error with its field.

    Exit code 0 when valid, 1 when not (each error on its own line, as
    "error: FIELD: MESSAGE").

    \b
    Example:
      openshell policy validate examples/quickstart/policy.yaml
    """
    from openshell.policy import PolicyError, parse_policy

    try:
        data = _read(file)
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        parse_policy(data)
    except PolicyError as exc:
        for err in exc.errors:
            click.echo(f"error: {err.field}: {err.message}", err=True)
        raise SystemExit(1) from None
    click.echo("valid")


@policy.command("default")
def default() -> None:
    """Print the default policy (what a sandbox created without one gets) as YAML.

    \b
    Example:
      openshell policy default > policy.yaml
    """
    from openshell.policy import default_policy, dump_policy

    click.echo(dump_policy(default_policy()).rstrip())


def _explain(policy_file: str, binary: str, ancestors: tuple[str, ...], host: str, port: int,
             resolved: tuple[str, ...], method: str | None, target: str | None) -> dict[str, Any]:
    from openshell.policy import decide
    from openshell.policy.decision import ConnectInput, RequestInput
    from openshell.policy.hosts import ip_literal, normalise_host
    from openshell.policy.http import PathError, parse_query, split_target

    pol = _load_policy(policy_file)
    engine = _engine_class()()
    compiled = engine.load(pol)
    inp = ConnectInput(host=normalise_host(host), port=port, binary=binary, ancestors=ancestors)
    note = ""
    if resolved or ip_literal(inp.host) is not None:
        d = decide(engine, compiled, inp, resolved)
    else:
        # Offline: we do not resolve names (no traffic leaves this machine).
        d = engine.decide_connect(compiled, inp)
        if d.allowed:
            note = "; destination safety not checked (pass --resolved IP)"
    layer = "l4"
    if method and d.allowed:
        endpoint = d.endpoint
        if endpoint is not None and endpoint.protocol == "rest":
            layer = "l7"
            try:
                path, raw_query = split_target(target or "/")
            except PathError as exc:
                return {"decision": "deny", "policy": d.policy, "error": "bad_request", "reason": f"request refused with 400: {exc}",
                        "engine": d.engine, "layer": layer, "rule": f"{method.upper()} {target}", "addresses": list(d.addresses)}
            d2 = engine.decide_request(compiled, RequestInput(
                connect=inp, policy_key=d.policy or "", method=method.upper(), path=path,
                query=parse_query(raw_query), endpoint=endpoint,
            ))
            return {"decision": d2.action, "policy": d2.policy, "error": d2.error, "reason": d2.reason + note,
                    "engine": d2.engine, "layer": layer, "rule": d2.rule, "addresses": list(d.addresses)}
        note += "; the endpoint is not inspected (no protocol: rest), so every request on it is allowed"
    return {"decision": d.action, "policy": d.policy, "error": d.error, "reason": d.reason + (note if d.allowed else ""),
            "engine": d.engine, "layer": layer, "rule": d.rule, "addresses": list(d.addresses)}


@policy.command("explain")
@click.option("--policy", "policy_file", required=True, type=click.Path(dir_okay=False, allow_dash=True), help="Policy YAML file.")
@click.option("--binary", required=True, help="Canonical executable path of the connecting process.")
@click.option("--ancestor", "ancestors", multiple=True, help="Ancestor executable path, nearest first (repeatable).")
@click.option("--host", required=True, help="Requested host (CONNECT target).")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="Requested port.")
@click.option("--resolved", multiple=True, help="An address the host resolves to (repeatable); names are never looked up.")
@click.option("--method", default=None, help="HTTP method of one request on the connection.")
@click.option("--path", "target", default=None, help="Request target of that request: PATH[?QUERY].")
@OUTPUT_OPTION
def explain(policy_file: str, binary: str, ancestors: tuple[str, ...], host: str, port: int,
            resolved: tuple[str, ...], method: str | None, target: str | None, output: str) -> None:
    """Explain the decision for one connection (and optionally one HTTP request).

    Prints decision (allow / deny / audit), the matched policy key, the 403
    error (policy_denied / ssrf_denied) and the reason, as the sandbox proxy
    would decide them. Exit code 0 whatever the decision.

    \b
    Example:
      openshell policy explain --policy policy.yaml --binary /usr/bin/curl \\
          --host api.example.test --port 8080 --resolved 10.199.0.2 \\
          --method GET --path '/repos/acme?per_page=10' -o json
    """
    if (method is None) != (target is None):
        raise click.UsageError("--method and --path go together")
    record = _explain(policy_file, binary, ancestors, host, port, resolved, method, target)
    if output == "table":
        for key in ("decision", "policy", "error", "reason", "engine", "layer", "rule", "addresses"):
            value = record.get(key)
            if value in (None, "", []):
                continue
            click.echo(f"{key + ':':<10} {', '.join(value) if isinstance(value, list) else value}")
        return
    render(record, output)


COMMANDS = [policy]
