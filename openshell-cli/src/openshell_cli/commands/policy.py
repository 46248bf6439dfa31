"""``openshell policy validate|default|explain|set|get|list`` (POLICY.md).

Offline: ``validate`` checks a file, ``default`` prints the policy a sandbox
gets without one, ``explain --policy FILE`` runs one connection (and
optionally one HTTP request) through the policy engine and destination safety
exactly as the sandbox proxy would, with the resolved addresses given on the
command line instead of looked up.

Against a gateway (POLICY.md §6): ``set`` stores a new revision of a running
sandbox's policy (``--wait`` until the supervisor loaded it), ``get`` prints
the active revision, ``list`` every revision with its status, and
``explain NAME`` explains a decision under the sandbox's active policy.
"""

from __future__ import annotations

from typing import Any

import click

from openshell_cli import session
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION, gateway_option, one_line_errors


def _engine_class() -> type:
    """Return the ``opa`` engine class: through the plugin registry, like the supervisor."""
    from openshell.plugin.loader import get_registry

    try:
        return get_registry().get_class("policy", "opa")
    except Exception as exc:  # noqa: BLE001 - PluginNotFound / PluginLoadError, shown as one line
        raise CliError(f"policy engine 'opa' is not available: {exc}") from None


def _read(path: str) -> bytes:
    """The bytes of policy file ``path`` (``-`` is stdin).

    :raises CliError: it cannot be read or is over the policy size limit (read no
        further than that: ``/dev/zero`` or a huge file must not fill memory).
    """
    from openshell.policy.yamlio import MAX_DOCUMENT_BYTES

    try:
        with click.open_file(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read policy file {path}: {exc.strerror or exc}; pass an existing YAML file") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CliError(f"policy file {path} is larger than {MAX_DOCUMENT_BYTES} bytes; a policy is a small YAML document")
    return data


def _load_policy(path: str):
    from openshell.policy import PolicyError, parse_policy

    data = _read(path)
    try:
        return parse_policy(data)
    except PolicyError as exc:
        n = len(exc.errors) - 1
        more = f" ({n} more error{'s' if n > 1 else ''}: run 'openshell policy validate {path}')" if n > 0 else ""
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
      openshell policy set demo --policy policy.yaml --wait
      openshell policy get demo > active.yaml
      openshell policy list demo
    """


@policy.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def validate(file: str) -> None:
    """Validate FILE offline; print "valid" or every error with its field.

    Exit code 0 when valid, 1 when not (each error on its own line, as
    "error: FIELD: MESSAGE"). A valid policy may still get warnings on stderr
    ("warning: FIELD: MESSAGE"), e.g. an endpoint on loopback, which the proxy
    always refuses.

    \b
    Example:
      openshell policy validate examples/quickstart/policy.yaml
    """
    from openshell.policy import PolicyError, parse_policy
    from openshell.policy.destination import unreachable_endpoints

    data = _read(file)
    try:
        parsed = parse_policy(data)
    except PolicyError as exc:
        for err in exc.errors:
            click.echo(f"error: {err.field}: {err.message}", err=True)
        raise SystemExit(1) from None
    for where, message in unreachable_endpoints(parsed.network):
        click.echo(f"warning: {where}: {message}", err=True)
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


def _explain(
    pol: Any, binary: str, ancestors: tuple[str, ...], host: str, port: int, resolved: tuple[str, ...], method: str | None, target: str | None
) -> dict[str, Any]:
    from openshell.policy import decide
    from openshell.policy.decision import ConnectInput, RequestInput
    from openshell.policy.hosts import ip_literal, normalise_host
    from openshell.policy.http import PathError, parse_query, split_target

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
                return {
                    "decision": "deny",
                    "policy": d.policy,
                    "error": "bad_request",
                    "reason": f"request refused with 400: {exc}",
                    "engine": d.engine,
                    "layer": layer,
                    "rule": f"{method.upper()} {target}",
                    "addresses": list(d.addresses),
                }
            d2 = engine.decide_request(
                compiled,
                RequestInput(
                    connect=inp,
                    policy_key=d.policy or "",
                    method=method.upper(),
                    path=path,
                    query=parse_query(raw_query),
                    endpoint=endpoint,
                ),
            )
            return {
                "decision": d2.action,
                "policy": d2.policy,
                "error": d2.error,
                "reason": d2.reason + note,
                "engine": d2.engine,
                "layer": layer,
                "rule": d2.rule,
                "addresses": list(d.addresses),
            }
        note += "; the endpoint is not inspected (no protocol: rest), so every request on it is allowed"
    return {
        "decision": d.action,
        "policy": d.policy,
        "error": d.error,
        "reason": d.reason + (note if d.allowed else ""),
        "engine": d.engine,
        "layer": layer,
        "rule": d.rule,
        "addresses": list(d.addresses),
    }


def explain_in_sandbox(
    client: Any,
    name: str,
    binary: str,
    ancestors: tuple[str, ...],
    host: str,
    port: int,
    resolved: tuple[str, ...] = (),
    method: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """``policy explain NAME``: the decision for one connection under sandbox ``name``'s active policy.

    Without ``resolved`` the sandbox's hosts entries stand in for DNS, as in the
    proxy (names are never looked up). Also what ``openshell term`` shows for a denied line.

    :returns: ``decision``, ``policy``, ``error``, ``reason``, ``engine``, ``layer``, ``rule``, ``addresses``.
    :raises OpenShellError: the gateway cannot be asked (no such sandbox, unreachable).
    """
    from openshell.policy import parse_policy

    pol = parse_policy(client.get_policy(name).policy_yaml)
    if not resolved:
        # The proxy resolves the sandbox's hosts entries before DNS; so do we.
        wanted = host.lower().rstrip(".")
        entries = (e.partition(":") for e in client.get_sandbox(name).extra_hosts)
        resolved = tuple(ip for n, _, ip in entries if n.lower() == wanted)
    return _explain(pol, binary, ancestors, host, port, resolved, method, target)


@policy.command("explain")
@click.argument("name", required=False)
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, allow_dash=True), help="Policy YAML file (instead of a sandbox NAME).")
@gateway_option("Gateway name (default: the active one); with NAME.")
@WORKSPACE_OPTION
@click.option("--binary", required=True, help="Canonical executable path of the connecting process.")
@click.option("--ancestor", "ancestors", multiple=True, help="Ancestor executable path, nearest first (repeatable).")
@click.option("--host", required=True, help="Requested host (CONNECT target).")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="Requested port.")
@click.option("--resolved", multiple=True, help="An address the host resolves to (repeatable); names are never looked up.")
@click.option("--method", default=None, help="HTTP method of one request on the connection.")
@click.option("--path", "target", default=None, help="Request target of that request: PATH[?QUERY].")
@OUTPUT_OPTION
def explain(
    name: str | None,
    policy_file: str | None,
    gateway: str | None,
    binary: str,
    ancestors: tuple[str, ...],
    host: str,
    port: int,
    resolved: tuple[str, ...],
    method: str | None,
    target: str | None,
    output: str,
) -> None:
    """Explain the decision for one connection (and optionally one HTTP request).

    Under sandbox NAME's active policy (asks the gateway), or offline under
    --policy FILE. Prints decision (allow / deny / audit), the matched policy
    key, the 403 error (policy_denied / ssrf_denied) and the reason, as the
    sandbox proxy would decide them. Exit code 0 whatever the decision.

    \b
    Examples:
      openshell policy explain demo --binary /usr/bin/curl --host api.example.test --port 8080
      openshell policy explain --policy policy.yaml --binary /usr/bin/curl \\
          --host api.example.test --port 8080 --resolved 10.199.0.2 \\
          --method GET --path '/repos/acme?per_page=10' -o json
    """
    if (method is None) != (target is None):
        raise click.UsageError("--method and --path go together")
    if (name is None) == (policy_file is None):
        raise click.UsageError("name a sandbox (its active policy) or pass --policy FILE, not both")
    if policy_file is not None:
        pol = _load_policy(policy_file)
        record = _explain(pol, binary, ancestors, host, port, resolved, method, target)
    else:
        assert name is not None  # exactly one of NAME and --policy, checked above
        with one_line_errors():
            record = explain_in_sandbox(session.client(gateway), name, binary, ancestors, host, port, resolved, method, target)
    if output == "table":
        for key in ("decision", "policy", "error", "reason", "engine", "layer", "rule", "addresses"):
            value = record.get(key)
            if value in (None, "", []):
                continue
            click.echo(f"{key + ':':<10} {', '.join(value) if isinstance(value, list) else value}")
        return
    render(record, output)


# --------------------------------------------------------------------------- against a gateway

SET_WAIT_TIMEOUT = 60.0  # seconds ``policy set --wait`` waits for the supervisor by default


@policy.command("set")
@click.argument("name")
@click.option("--policy", "policy_file", required=True, type=click.Path(dir_okay=False, allow_dash=True), help="Policy YAML file.")
@click.option("--wait", is_flag=True, help="Return only when the supervisor reports the revision loaded (exit 1 if it fails).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help=f"Seconds --wait waits (default {SET_WAIT_TIMEOUT:g}).")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def set_(name: str, policy_file: str, wait: bool, timeout: float, gateway: str | None) -> None:
    """Store FILE as the next policy revision of running sandbox NAME.

    The network policies take effect without a restart: new connections use
    them, open raw tunnels they no longer allow are closed. Static sections
    (filesystem_policy, landlock, process) may be omitted (kept) but not
    changed; recreate the sandbox to change them.

    \b
    Examples:
      openshell policy set demo --policy policy.yaml --wait
      openshell policy set demo --policy policy.yaml --wait --timeout 10
    """
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    _load_policy(policy_file)  # a bad file fails here, before anything is sent
    text = _read(policy_file).decode("utf-8", "replace")
    client = session.client(gateway)
    from openshell.client.sdk import InvalidRequest, OpenShellError

    try:
        rev = client.set_policy(name, text)
    except InvalidRequest as exc:  # invalid, or a static section changed: name the file and field
        raise CliError(f"{policy_file}: {str(exc).removeprefix('policy_yaml.')}") from None
    except OpenShellError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"sandbox {name}: policy revision {rev.version} stored", err=True)
    if not wait:
        return
    from rich.console import Console

    with Console(stderr=True).status(f"waiting for the supervisor to load revision {rev.version}…"):
        try:
            client.wait_policy(name, rev.version, timeout=timeout or SET_WAIT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - PolicyFailed / WaitTimeout: one line, exit 1
            raise CliError(str(exc)) from None
    click.echo(f"sandbox {name}: policy revision {rev.version} loaded", err=True)


@policy.command("get")
@click.argument("name")
@click.option("--revision", type=click.IntRange(min=1), default=None, help="A stored revision (default: the active one).")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def get(name: str, revision: int | None, gateway: str | None, output: str) -> None:
    """Print the active policy of sandbox NAME (or --revision N).

    The default output is the policy document itself (YAML, complete), so it
    can be edited and passed back to 'policy set'; -o json|yaml print the
    revision record with the document in policy_yaml.

    \b
    Examples:
      openshell policy get demo > policy.yaml
      openshell policy get demo --revision 2 -o json
    """
    with one_line_errors():
        rev = session.client(gateway).get_policy(name, revision or 0)
    if output == "table":
        state = f"{rev.status}, active" if rev.active else rev.status
        click.echo(f"# sandbox {name}: policy revision {rev.version} ({state})", err=True)
        click.echo(rev.policy_yaml.rstrip())
        return
    render(rev.to_dict(with_policy=True), output)


@policy.command("list")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def list_(name: str, gateway: str | None, output: str) -> None:
    """List the policy revisions of sandbox NAME, newest first.

    STATUS is pending (not yet loaded by the supervisor), loaded, failed
    (ERROR says why; the previous revision stayed in force) or superseded
    (never loaded: a newer revision was loaded first). ACTIVE marks the
    revision in force. TIME (UTC) is when the supervisor reported it, or when
    it was stored while pending; -o json|yaml give both times in full.

    \b
    Example:
      openshell policy list demo -o json
    """
    from openshell.client.policies import short_time

    with one_line_errors():
        revisions = session.client(gateway).list_policies(name)
    if output != "table":
        render([rev.to_dict() for rev in revisions], output)
        return
    rows = [
        {
            "revision": rev.version,
            "status": rev.status,
            "active": "*" if rev.active else "",
            "time": short_time(rev.reported_at or rev.created_at),
            "error": rev.error,
        }
        for rev in revisions
    ]
    render(rows, output, empty=f"sandbox {name} has no policy revisions")


COMMANDS = [policy]
