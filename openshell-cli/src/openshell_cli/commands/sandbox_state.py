"""``openshell sandbox stop|start|watch`` (added to the ``sandbox`` group by
``commands/sandbox.py``) and the stream printer ``sandbox logs -f`` uses."""

from __future__ import annotations

import datetime
import json
import time

import click
import yaml
from openshell.client.watch import WatchEvent

from openshell_cli import session
from openshell_cli.output import OUTPUT_OPTION
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION

START_TIMEOUT = 120.0  # seconds 'sandbox start' waits for READY

_LEVEL = click.Choice(["debug", "info", "warning", "error"])


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t or time.time(), datetime.timezone.utc).strftime("%H:%M:%S")


def watch_line(ev: WatchEvent) -> str:
    """One line of text for a :class:`WatchEvent` (``sandbox watch`` without ``-o``)."""
    if ev.kind == "status" and ev.sandbox is not None:
        sb = ev.sandbox
        policy = f" policy v{sb.policy_version}" if sb.policy_version else ""
        return f"{_clock(ev.time)} status  {sb.phase}{policy}" + (f": {sb.reason}" if sb.reason else "")
    if ev.kind == "log":
        return f"{_clock(ev.time)} log     {ev.level.upper():7} {ev.message}"
    if ev.kind == "event":
        return f"{_clock(ev.time)} event   {ev.type} {ev.reason}: {ev.message} ({ev.source})"
    if ev.kind == "lagged":
        return f"{_clock(0)} lagged  {ev.dropped} item(s) dropped: this watcher fell behind"
    return f"{_clock(ev.time)} {ev.kind:7} {ev.message}"


def _emit(data: dict, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data))
    else:
        click.echo("---\n" + yaml.safe_dump(data, sort_keys=False).rstrip())


def follow_logs(client, name: str, *, lines: int, level: str, output: str) -> None:
    """``sandbox logs -f``: the last ``lines`` log lines, then new ones as the
    gateway streams them, until Ctrl-C or the sandbox is deleted.

    Rows print as ``sandbox logs`` prints them; a gap (this terminal fell
    behind the stream) is reported on stderr with how many lines were lost.
    """
    for ev in client.watch_sandbox(name, status=False, logs=True, events=False, log_tail=lines, min_level=level):
        if ev.kind == "log":
            row = {"time": ev.time, "level": ev.level, "target": ev.target, "message": ev.message, "fields": dict(ev.fields)}
            if output == "table":
                click.echo(f"{_clock(ev.time)} {ev.level.upper():7} {ev.message}")
            else:
                _emit(row, output)
        elif ev.kind == "lagged":
            click.echo(f"openshell: {ev.dropped} log line(s) dropped: this terminal fell behind the stream", err=True)
    if output == "table":
        click.echo(f"sandbox '{name}' was deleted", err=True)


@click.command("stop")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def stop(name, gateway) -> None:
    """Stop a sandbox: every process in it ends; the sandbox, its /sandbox
    files and its policy stay (phase STOPPED) until 'sandbox start' or 'delete'.

    \b
    Examples:
      openshell sandbox stop demo
      openshell sandbox start demo
    """
    client = session.client(gateway)
    client.stop_sandbox(name)
    click.echo(f"stopped {name}")


@click.command("start")
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Return once the supervisor is started, before READY.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=START_TIMEOUT, show_default=True, help="Seconds to wait for READY.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def start(name, no_wait, timeout, gateway) -> None:
    """Start a stopped sandbox again, with the same /sandbox files and policy
    (processes, /tmp and network namespaces are new).

    \b
    Examples:
      openshell sandbox start demo
    """
    client = session.client(gateway)
    sb = client.start_sandbox(name)
    if sb.phase == "READY":  # a started one comes back PROVISIONING: this one was running
        click.echo(f"sandbox {name} is already running (READY); nothing to start")
        return
    if not no_wait:
        sb = client.wait_ready(name, timeout=timeout)
    click.echo(f"started {name} ({sb.phase})")


@click.command("watch")
@click.argument("name")
@click.option("--no-status", is_flag=True, help="Leave out status changes.")
@click.option("--no-logs", is_flag=True, help="Leave out log lines.")
@click.option("--no-events", is_flag=True, help="Leave out platform events (OOM kills, limits, stop/start).")
@click.option("-n", "--lines", type=click.IntRange(0, 10_000), default=0, show_default=True, help="Log lines already held to show first.")
@click.option("--events-tail", type=click.IntRange(0, 100), default=10, show_default=True, help="Platform events already held to show first.")
@click.option("--level", type=_LEVEL, default=None, help="Minimum log level.")
@click.option("--exit-on-stop", is_flag=True, help="Exit once the sandbox is STOPPED or ERROR.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def watch(name, no_status, no_logs, no_events, lines, events_tail, level, exit_on_stop, gateway, output) -> None:
    """Follow a sandbox: status changes, log lines and platform events (an OOM
    kill, a full /tmp, a refused fork, stop/start) as they happen, until
    Ctrl-C or the sandbox is deleted.

    \b
    Examples:
      openshell sandbox watch demo
      openshell sandbox watch demo --no-logs -o json    # status and events as JSON lines
    """
    if no_status and no_logs and no_events:
        raise click.UsageError("leave at least one of status, logs, events")
    client = session.client(gateway)
    events = client.watch_sandbox(
        name,
        status=not no_status,
        logs=not no_logs,
        events=not no_events,
        log_tail=lines,
        event_tail=0 if no_events else events_tail,
        min_level=level or "",
        stop_on_terminal=exit_on_stop,
    )
    last = None
    for ev in events:
        last = ev
        if output == "table":
            click.echo(watch_line(ev))
        else:
            _emit(ev.to_dict(), output)
    stopped = exit_on_stop and last is not None and last.kind == "status"
    if output == "table" and not stopped:
        click.echo(f"sandbox '{name}' was deleted", err=True)


#: added to the ``sandbox`` group by ``commands/sandbox.py``
SANDBOX_COMMANDS = (stop, start, watch)
