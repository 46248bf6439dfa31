"""``openshell plugins|isolation|drivers|agents|inference``: what is installed.

Every command reads the process-wide plugin registry. A plugin that fails to
load is a row with status ``failed`` and the exception's first line, never a
crash; only ``OPENSHELL_STRICT_PLUGINS=1`` turns a failure into exit code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from openshell_cli import agent_flow, session
from openshell_cli.commands.inference_route import inference_get, inference_set
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, render
from openshell_cli.session import gateway_option

if TYPE_CHECKING:  # pragma: no cover - imported when used: the CLI starts fast
    from openshell.plugin.kinds import Agent, InferenceBackend, IsolationLayer
    from openshell.plugin.loader import Registry


def _registry() -> Registry:
    from openshell.plugin.loader import PluginError, get_registry

    try:
        return get_registry()
    except PluginError as exc:  # strict mode: fatal, one line
        raise CliError(str(exc)) from None


def _kind_rows(kind: str, extra: Callable[[type[Any]], dict[str, Any]], extra_columns: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per registered class of ``kind``, then one per plugin of that kind without a usable class.

    ``detail`` is what a table shows in its last column: the summary, or the error
    for a plugin that failed (tables fit 80 columns; json/yaml carry both).

    :param extra: returns the kind-specific columns for a class.
    :param extra_columns: the keys ``extra`` returns (left blank on rows without a class).
    """
    reg = _registry()
    rows: list[dict[str, Any]] = []
    classes = reg.classes(kind)
    for name, cls in classes.items():
        owner = next((i for i in reg.infos if f"{kind}:{name}" in i.classes), None)
        row = {
            "name": name,
            "distribution": owner.distribution if owner else "",
            "version": owner.version if owner else "",
            "status": "loaded",
            "summary": cls.summary,
            "error": "",
            "detail": cls.summary,
        }
        rows.append({**row, **extra(cls)})
    for info in reg.infos:
        if info.kind == kind and info.name not in classes and not any(c.startswith(f"{kind}:") for c in info.classes):
            error = info.error or ("registers no class" if info.status == "loaded" else "")
            rows.append(
                {
                    "name": info.name,
                    **{k: "" for k in extra_columns},
                    "distribution": info.distribution,
                    "version": info.version,
                    "status": info.status,
                    "summary": "",
                    "error": error,
                    "detail": error,
                }
            )
    return rows


def _columns(rows: list[dict[str, Any]], base: list[str]) -> list[str]:
    # Show the error column only when something failed: tables fit 80 columns.
    return base + (["error"] if any(r.get("error") for r in rows) else [])


# --------------------------------------------------------------------------- plugins


@click.group("plugins")
def plugins() -> None:
    """Installed OpenShell plugins of every kind.

    \b
    Example:
      openshell plugins list
      openshell plugins list -o json
      OPENSHELL_DISABLE_PLUGINS=claude openshell plugins list
    """


@plugins.command("list")
@OUTPUT_OPTION
def plugins_list(output: str) -> None:
    """List every plugin entry point: name, kind, distribution, version, status, error.

    Status is loaded, failed (with the error's first line) or disabled
    (OPENSHELL_DISABLE_PLUGINS).

    \b
    Example:
      openshell plugins list -o yaml
    """
    # Run the plugins' register_commands too (the CLI does only when it needs their
    # commands), so a plugin whose hook fails shows as failed here.
    add_commands = getattr(click.get_current_context().find_root().command, "add_plugin_commands", None)
    if add_commands is not None:
        add_commands()
    reg = _registry()
    rows = [
        {
            "name": i.name,
            "kind": i.kind,
            "distribution": i.distribution,
            "version": i.version,
            "status": i.status,
            "error": i.error,
        }
        for i in reg.infos
        if i.kind  # objects registered by hand (tests) are not installed plugins
    ]
    render(
        rows,
        output,
        columns=_columns(rows, ["name", "kind", "distribution", "version", "status"]),
        empty="no plugins installed; reinstall openshell-cli to get the built-in set",
    )


# --------------------------------------------------------------------------- isolation


@click.group("isolation")
def isolation() -> None:
    """Isolation layers (network namespace, Landlock, seccomp).

    \b
    Example:
      openshell isolation list --check
    """


@isolation.command("list")
@click.option("--check", is_flag=True, help="Run each layer's probe() and show whether this kernel supports it.")
@OUTPUT_OPTION
def isolation_list(check: bool, output: str) -> None:
    """List isolation layers in the order the child launcher applies them.

    \b
    Example:
      openshell isolation list --check -o json
    """

    def extra(cls: type[IsolationLayer]) -> dict[str, Any]:
        row: dict[str, Any] = {"order": cls.order, "required": cls.required}
        if check:
            row.update(_probe(cls))
        return row

    rows = _kind_rows("isolation", extra, ("order", "required", *(("ok", "detail") if check else ())))
    rows.sort(key=lambda r: (r["order"] if isinstance(r["order"], int) else 1_000_000, r["name"]))
    base = ["name", "order", "status", *(["ok", "detail"] if check else ["detail"])]
    render(
        rows,
        output,
        columns=base,
        empty="no isolation layers installed; install them with: pip install openshell-plugin-netns openshell-plugin-landlock openshell-plugin-seccomp",
    )


def _probe(cls: type[IsolationLayer]) -> dict[str, Any]:
    try:
        result = cls().probe()
        return {"ok": bool(result.ok), "detail": result.detail}
    except Exception as exc:  # noqa: BLE001 - a probe that raises is a failed probe, not a crash
        from openshell.plugin.loader import first_line

        return {"ok": False, "detail": f"probe raised {first_line(exc)}"}


# --------------------------------------------------------------------------- drivers


@click.group("drivers")
def drivers() -> None:
    """Compute drivers (where sandboxes run: local, docker, kubernetes).

    \b
    Example:
      openshell drivers list
    """


@drivers.command("list")
@OUTPUT_OPTION
def drivers_list(output: str) -> None:
    """List compute drivers.

    \b
    Example:
      openshell drivers list -o json
    """
    rows = _kind_rows("drivers", lambda cls: {})
    render(
        rows,
        output,
        columns=["name", "distribution", "status", "detail"],
        empty="no compute drivers installed; reinstall openshell-core (it provides the 'local' driver)",
    )


# --------------------------------------------------------------------------- agents


@click.group("agents")
def agents() -> None:
    """Agent plugins (Claude Code, OpenCode, Codex, OpenClaw, third-party agents).

    \b
    Example:
      openshell agents list
      pip install openshell-plugin-claude && openshell agents list
    """


@agents.command("list")
@gateway_option("Gateway whose providers count (default: the active one, if running).")
@OUTPUT_OPTION
def agents_list(gateway: str | None, output: str) -> None:
    """List agent plugins: whether the agent program is installed, and provider status.

    INSTALLED is the program's version (or "no": run 'openshell agents install
    NAME'). PROVIDERS has one TYPE:STATE per provider type the agent needs:
    "provider" (the gateway has one), "env" (sandbox create will make one from
    your environment) or "missing".

    \b
    Example:
      openshell agents list
      openshell agents list -o json
    """
    existing = agent_flow.gateway_providers(_quiet_client(gateway))
    env = agent_flow.environ()

    def extra(cls: type[Agent]) -> dict[str, Any]:
        installed, version = _installed(cls)
        return {
            "package": cls.package,
            "installed": installed,
            "program_version": version,
            "providers": ",".join(cls.provider_types),
            "provider_status": _safe(lambda: agent_flow.provider_status(cls, existing, env)),
        }

    rows = _kind_rows("agents", extra, ("package", "installed", "program_version", "providers", "provider_status"))
    for row in rows:
        row["program"] = row.get("program_version") or ("no" if row.get("installed") is False else "")
    render(
        rows,
        output,
        columns=_columns(rows, ["name", "status", "program", "provider_status"]),
        empty="no agent plugins installed; install one with: pip install openshell-plugin-claude",
    )


def _safe(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one bad plugin never breaks the listing
        from openshell.plugin.loader import first_line

        return f"error: {first_line(exc)}"


def _installed(cls: type[Agent]) -> tuple[bool, str]:
    """``(installed, version)`` from the plugin's ``detect()`` (a raising detect counts as not installed)."""
    try:
        ok = bool(cls().detect())
    except Exception:  # noqa: BLE001 - a broken detect() means "not usable"
        return False, ""
    if not ok:
        return False, ""
    version = getattr(cls(), "installed_version", lambda: None)() if ok else None
    return True, version or "yes"


#: seconds 'agents list' waits for the gateway's provider list before falling back to the environment
PROVIDER_STATUS_TIMEOUT = 3.0


def _quiet_client(gateway: str | None):
    """A client for the active gateway when one is configured, else None (never starts one)."""
    try:
        return session.client(gateway, timeout=PROVIDER_STATUS_TIMEOUT)
    except Exception:  # noqa: BLE001 - no gateway: provider status comes from the environment
        return None


@agents.command("install")
@click.argument("name")
@click.option("--version", "version", help="npm version or range (default: the version the plugin was tested with; 'latest' for the newest).")
@click.option("--force", is_flag=True, help="Replace an existing /usr/local/bin/<command> that OpenShell did not install.")
def agents_install(name: str, version: str | None, force: bool) -> None:
    """Install agent NAME's program where every sandbox can run it.

    npm installs the package into /usr/local/lib/openshell/agents/NAME (under
    /usr, which every sandbox may read) and links its command into
    /usr/local/bin. Needs root and npm; the npm cache (~/.npm) makes a second
    install fast. An agent that needs a newer Node.js than this machine's
    (openclaw: >= 24.16) first gets OpenShell's Node.js runtime from PyPI
    (/usr/local/lib/openshell/runtimes/node-24) and runs with it.

    \b
    Example:
      openshell agents install claude
      openshell agents install codex --version latest
    """
    from openshell.agents import NpmAgent, NpmInstallError, npm_install
    from rich.console import Console

    cls = agent_flow.agent_class(name)
    if not issubclass(cls, NpmAgent):
        raise CliError(f"agent {name!r} is not installed from npm ({cls.package or 'no package declared'}); see its plugin's README")
    console = Console(stderr=True)
    spec = f"{cls.npm_package}@{version or cls.npm_version or 'latest'}"
    with console.status(f"installing {spec} …") as status:

        def progress(line: str) -> None:
            status.update(f"installing {spec}: {line[:60]}")

        try:
            result = npm_install(cls, version, on_output=progress, force=force)
        except NpmInstallError as exc:
            raise CliError(str(exc)) from None
    click.echo(f"installed {name}: {result.version} ({result.link} -> {result.target})")


@agents.command("policy")
@click.argument("name")
@OUTPUT_OPTION
def agents_policy(name: str, output: str) -> None:
    """Print the network_policies fragment agent NAME adds to a sandbox's policy.

    'openshell sandbox create -- NAME' merges it into your --policy (your rules
    win on equal keys); --no-agent-policy leaves it out.

    \b
    Example:
      openshell agents policy claude
      openshell agents policy codex -o json
    """
    import yaml as _yaml

    cls = agent_flow.agent_class(name)
    fragment = {"network_policies": cls().policy_fragment()}
    if output == "table":  # a fragment is a document, not rows: YAML is its natural table
        click.echo(_yaml.safe_dump(fragment, sort_keys=False).rstrip())
    else:
        render(fragment, output)


# --------------------------------------------------------------------------- inference


@click.group("inference")
def inference() -> None:
    """Inference backends that https://inference.local can route to.

    \b
    Example:
      openshell inference backends
    """


@inference.command("backends")
@click.argument("names", nargs=-1)
@click.option("--check", is_flag=True, help="Run each backend's probe(): does its models endpoint answer?")
@OUTPUT_OPTION
def inference_backends(names: tuple[str, ...], check: bool, output: str) -> None:
    """List inference backend plugins (or only NAMES): name, protocols, default base URL.

    With --check, probes each backend's models endpoint (the URL of the
    gateway's route for the routed backend, else its default URL; hosted
    defaults such as api.openai.com are contacted).

    \b
    Example:
      openshell inference backends
      openshell inference backends vllm --check
      openshell inference backends -o json
    """
    route = _quiet_route() if check else None

    def extra(cls: type[InferenceBackend]) -> dict[str, Any]:
        row: dict[str, Any] = {"protocols": ",".join(cls.protocols), "base_url": cls.default_base_url}
        if check:
            url = route.base_url if route is not None and route.backend == cls.name and route.base_url else cls.default_base_url
            probe = _probe_backend(cls, url)
            row.update(base_url=url, check="ok" if probe["ok"] else "failed", check_detail=probe["detail"])
        return row

    cols = ("protocols", "base_url", "check", "check_detail") if check else ("protocols", "base_url")
    if names:
        from openshell.plugin.loader import PluginNotFound

        for n in names:
            try:
                _registry().get_class("inference", n)
            except PluginNotFound as exc:
                raise CliError(str(exc)) from None
        _orig = extra

        def extra(cls: type[InferenceBackend]) -> dict[str, Any]:  # noqa: F811 - probe only the named backends
            return _orig(cls) if cls.name in names else {"protocols": ",".join(cls.protocols), "base_url": cls.default_base_url}

    if check:
        from rich.console import Console

        with Console(stderr=True).status("probing inference backends…"):
            rows = _kind_rows("inference", extra, cols)
    else:
        rows = _kind_rows("inference", extra, cols)
    if names:
        rows = [r for r in rows if r["name"] in names]
    if check:
        for row in rows:
            if row.get("check_detail"):
                row["detail"] = row["check_detail"]
    if output == "table" and not check:
        # the default URL is what a user picks a backend by; failed rows show their error there
        rows = [{**r, "base_url": r.get("base_url") or r.get("detail", "")} for r in rows]
    render(
        rows,
        output,
        columns=["name", "protocols", "status", *(["check", "detail"] if check else ["base_url"])],
        empty="no inference backend plugins installed; install one with: pip install openshell-plugin-vllm",
    )


def _probe_backend(cls: type[InferenceBackend], url: str) -> dict[str, Any]:
    try:
        backend = cls()
        result = backend.probe(url, None)
        detail = result.detail
        if result.ok:
            models = backend.list_models(url, None)
            if models:
                shown = ", ".join(models[:3]) + (f" (+{len(models) - 3})" if len(models) > 3 else "")
                detail = f"{detail}: {shown}"
        return {"ok": bool(result.ok), "detail": detail}
    except Exception as exc:  # noqa: BLE001 - a broken probe() is a failed check, not a crash
        from openshell.plugin.loader import first_line

        return {"ok": False, "detail": f"probe failed: {first_line(exc)}"}


def _quiet_route():
    """The gateway's inference route when a gateway answers, else None (never starts one)."""
    client = _quiet_client(None)
    if client is None:
        return None
    try:
        return client.get_inference_route()
    except Exception:  # noqa: BLE001 - no gateway: probe default URLs
        return None
    finally:
        client.close()


inference.add_command(inference_set)
inference.add_command(inference_get)


COMMANDS = [plugins, isolation, drivers, agents, inference]
