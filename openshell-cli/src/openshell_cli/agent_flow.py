"""What ``openshell sandbox create -- <agent>`` and ``openshell agents …`` do for an agent.

Kept apart from the click commands so each step is a function with one job:
resolve the agent, merge its policy fragment, decide its providers, build its
environment, write its home files inside the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openshell_cli.errors import CliError

if TYPE_CHECKING:  # pragma: no cover - imported when used: the CLI starts fast
    from openshell.plugin.kinds import Agent
    from openshell.plugin.loader import Registry

#: what agents see as the inference endpoint (the proxy intercepts it, DESIGN.md §5)
INFERENCE_ORIGIN = "https://inference.local"
#: seconds writing one home file inside the sandbox may take
HOME_FILE_TIMEOUT = 30.0
#: largest home file the CLI writes (they are small config files)
MAX_HOME_FILE_BYTES = 64 * 1024


def registry() -> Registry:
    """The process plugin registry; strict-mode load failures become one-line errors."""
    from openshell.plugin.loader import PluginError, get_registry

    try:
        return get_registry()
    except PluginError as exc:
        raise CliError(str(exc)) from None


def agent_class(name: str) -> type[Agent]:
    """Return the registered agent class called ``name``.

    :raises CliError: unknown agent; the message lists the installed ones.
    """
    from openshell.agents import UnknownAgent, resolve_agent

    try:
        cls = resolve_agent(name, registry(), explicit=True)
    except UnknownAgent as exc:
        raise CliError(str(exc)) from None
    assert cls is not None
    return cls


# --------------------------------------------------------------------------- providers


def gateway_providers(client: Any) -> dict[str, str] | None:
    """Return ``{provider name: type}`` from the gateway, or None when it cannot be asked."""
    lister = getattr(client, "list_providers", None) if client is not None else None
    if lister is None:
        return None
    try:
        return {p.name: p.type for p in lister()}
    except Exception:  # noqa: BLE001 - status is best effort; the caller falls back to the environment
        return None


def provider_status(cls: type[Agent], existing: Mapping[str, str] | None, environ: Mapping[str, str]) -> str:
    """One word per provider type the agent needs: ``TYPE:provider``, ``TYPE:env`` or ``TYPE:missing``.

    ``provider``: the gateway has a provider of that type; ``env``: none yet, but
    ``sandbox create`` can make one from a variable in the environment;
    ``missing``: neither. Empty string when the agent needs no provider.
    """
    from openshell.providers import provider_types

    types = provider_types(registry())
    have = set((existing or {}).values())
    words = []
    for t in cls.provider_types:
        if t in have:
            words.append(f"{t}:provider")
        elif t in types and any(environ.get(v) for v in types[t].env_vars):
            words.append(f"{t}:env")
        else:
            words.append(f"{t}:missing")
    return ",".join(words)


def plan_providers(cls: type[Agent], client: Any, explicit: Sequence[str], environ: Mapping[str, str]) -> tuple[list[str], dict, list[str]]:
    """Decide the providers an agent's sandbox gets (with ``openshell.providers.auto.plan_auto_providers``).

    :returns: ``(attach, create, warnings)``: provider names to attach (explicit
        ones first), ``{name: (type, {env: value})}`` to create, one warning line
        per missing type.
    """
    from openshell.providers import provider_types
    from openshell.providers.auto import plan_auto_providers

    existing = gateway_providers(client) or {}
    plan = plan_auto_providers(cls.provider_types, existing, environ, types=provider_types(registry()), explicit=explicit)
    attach = list(dict.fromkeys([*explicit, *plan.use, *plan.create]))
    return attach, dict(plan.create), plan.warnings()


# --------------------------------------------------------------------------- inference


def inference_route(client: Any) -> Any:
    """Return the gateway's inference route (``InferenceRoute``), or None when none is set."""
    getter = getattr(client, "get_inference_route", None)
    if getter is None:
        return None
    try:
        route = getter()
    except Exception:  # noqa: BLE001 - an old gateway without routes: run without one
        return None
    return route if route is not None and bool(getattr(route, "backend", "")) else None


# --------------------------------------------------------------------------- the launch


@dataclass
class AgentLaunch:
    """Everything ``sandbox create`` needs to start an agent.

    :ivar name: the agent's public name; ``argv``: what runs in the sandbox.
    :ivar policy_yaml: the merged policy document sent to the gateway.
    :ivar shown_policy: the normalised merged policy shown to the user.
    :ivar env: sandbox environment (the user's ``--env`` wins over the agent's).
    :ivar home_files: ``{path under /sandbox: text}`` written before the agent starts.
    :ivar notes: lines to show the user (what was merged, what is missing).
    """

    name: str
    argv: list[str]
    policy_yaml: str
    shown_policy: str
    env: dict[str, str] = field(default_factory=dict)
    home_files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_launch(
    cls: type[Agent],
    command: Sequence[str],
    *,
    policy_text: str | None,
    user_env: Mapping[str, str],
    routed: Any,
    use_fragment: bool = True,
) -> AgentLaunch:
    """Build the launch of agent ``cls`` for ``command`` (``["claude", "-p", "hi"]``).

    :param policy_text: the user's ``--policy`` document (it wins on equal rule keys), or None.
    :param routed: the inference route (``inference_route()``) or None; when set the
        agent is pointed at ``inference.local``, and a route that speaks none of the
        agent's ``inference_protocols`` adds a warning note.
    :param use_fragment: merge the agent's policy fragment (``--no-agent-policy`` turns it off).
    :raises CliError: the agent program is not installed, or the merged policy is invalid.
    """
    from openshell.agents import merge_fragment
    from openshell.policy import PolicyError

    agent = cls()
    if not _detect(cls):
        raise CliError(f"agent {cls.name!r} is not installed here; run 'openshell agents install {cls.name}'")
    fragment = agent.policy_fragment() if use_fragment else {}
    try:
        merged = merge_fragment(policy_text, fragment)
    except PolicyError as exc:
        raise CliError(f"the policy with agent {cls.name!r}'s rules is invalid: {exc}; fix --policy or pass --no-agent-policy") from None
    notes = []
    if merged.added:
        notes.append(f"agent {cls.name}: added network rule(s) {', '.join(merged.added)} (see 'openshell agents policy {cls.name}')")
    if merged.kept:
        notes.append(f"agent {cls.name}: your --policy overrides rule(s) {', '.join(merged.kept)}")
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    if routed:
        env.update(agent.inference_env(INFERENCE_ORIGIN))
        files = agent.home_files(INFERENCE_ORIGIN)
        notes.append(f"agent {cls.name}: model calls go to {INFERENCE_ORIGIN} (the gateway's inference route)")
        speaks = set(getattr(cls, "inference_protocols", ()) or ())
        offered = set(getattr(routed, "protocols", ()) or ())
        if speaks and offered and not speaks & offered:
            notes.append(
                f"warning: agent {cls.name} speaks {'/'.join(sorted(speaks))} but the inference route "
                f"({getattr(routed, 'backend', '?')}) speaks {'/'.join(sorted(offered))}; its model calls will fail — "
                f"set a matching route with 'openshell inference set --backend ...'"
            )
    else:
        files = agent.home_files(None)
    env.update(user_env)
    argv = agent.argv(_extra_args(cls, command))
    return AgentLaunch(
        name=cls.name,
        argv=argv,
        policy_yaml=merged.yaml,
        shown_policy=merged.normalised_yaml(),
        env=env,
        home_files=files,
        notes=notes,
    )


def _extra_args(cls: type[Agent], command: Sequence[str]) -> list[str]:
    """The user's arguments for the agent: COMMAND without its first word when that word names the agent.

    ``-- claude -p hi`` and ``--agent claude -- -p hi`` both give ``["-p", "hi"]``.
    """
    from openshell.agents.resolve import command_names

    if command and os.path.basename(command[0]) in command_names(cls.name, cls):
        return list(command[1:])
    return list(command)


def _safe_home_path(rel: str) -> str:
    import posixpath

    norm = posixpath.normpath(rel)
    if not rel or rel.startswith("/") or norm != rel or norm.startswith("..") or "\x00" in rel or "\n" in rel:
        raise CliError(f"agent home file {rel!r} is not a plain path under /sandbox; report this to the plugin's author")
    return f"/sandbox/{norm}"


def write_home_files(client: Any, sandbox: str, files: Mapping[str, str]) -> None:
    """Write ``files`` under ``/sandbox`` inside the sandbox, as the sandbox user (mode 0600).

    Runs ``sh -c 'mkdir -p DIR && cat > FILE'`` through the sandbox's exec, so the
    write gets exactly the sandbox's isolation (Landlock decides what it may touch).

    :raises CliError: a path escapes ``/sandbox``, a file is too big, or the write failed.
    """
    for rel, text in files.items():
        target = _safe_home_path(rel)
        data = text.encode()
        if len(data) > MAX_HOME_FILE_BYTES:
            raise CliError(f"agent home file {rel!r} is larger than {MAX_HOME_FILE_BYTES} bytes; report this to the plugin's author")
        script = 'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
        code, _out, err = client.run(sandbox, ["/bin/sh", "-c", script, "sh", target], stdin=data, timeout=HOME_FILE_TIMEOUT)
        if code != 0:
            first = (err.decode(errors="replace").strip().splitlines() or [f"exit {code}"])[0]
            raise CliError(f"cannot write {target} in sandbox {sandbox!r}: {first}; check the sandbox's filesystem policy")


def environ() -> dict[str, str]:
    """A copy of this process's environment (one place to read it, for tests)."""
    return dict(os.environ)


# --------------------------------------------------------------------------- CLI glue


def resolve_for_create(agent_name: str | None, command: Sequence[str]) -> type[Agent] | None:
    """The agent ``sandbox create`` runs: ``--agent NAME``, else the one ``COMMAND[0]`` starts.

    Checked before any gateway is contacted, so a typo never starts one.

    :returns: None when COMMAND is an ordinary program (no agent flow).
    :raises CliError: ``--agent`` names no installed plugin, COMMAND[0] is a
        first-party agent whose plugin is not installed (the message lists the
        installed ones), or the agent's program is not installed.
    """
    from openshell.agents import UnknownAgent, resolve_agent

    cls = None
    try:
        if agent_name:
            cls = resolve_agent(agent_name, registry(), explicit=True)
        elif command:
            cls = resolve_agent(command[0], registry())
    except UnknownAgent as exc:
        raise CliError(str(exc)) from None
    if cls is not None and not _detect(cls):
        raise CliError(f"agent {cls.name!r} is not installed here; run 'openshell agents install {cls.name}'")
    return cls


def _detect(cls: type[Agent]) -> bool:
    try:
        return bool(cls().detect())
    except Exception:  # noqa: BLE001 - a broken detect() means "not usable"
        return False


def show_launch(launch: AgentLaunch, *, verbose_policy: bool = True) -> None:
    """Tell the user, on stderr, what the agent's sandbox gets: notes, then the merged policy."""
    import click

    for note in launch.notes:
        click.echo(note, err=True)
    if verbose_policy:
        click.echo(f"--- policy for this sandbox (agent {launch.name}) ---", err=True)
        click.echo(launch.shown_policy.rstrip(), err=True)
        click.echo("---", err=True)


def run_agent(client: Any, sandbox: str, argv: list[str], fallback: Any) -> int:
    """Run the agent in the sandbox: with a PTY when our stdin and stdout are terminals.

    :param fallback: ``run_exec``-like callable used when there is no terminal
        (scripts, CI: ``claude -p``, ``codex exec``).
    :returns: the agent's exit status.
    """
    import sys

    interactive = sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        from openshell_cli.interactive import grpc_tty_exec

        return grpc_tty_exec(client, sandbox, argv, env={}, workdir=None, timeout=None)
    return fallback(client, sandbox, argv, env={}, workdir=None, timeout=None, forward_stdin=True)
