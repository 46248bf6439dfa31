"""``openshell sandbox …``: create, list, get, exec, delete."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import click
from openshell.client.errors import WaitTimeout

from openshell_cli import agent_flow, interrupts, session
from openshell_cli.commands.provider import apply_auto_providers
from openshell_cli.commands.sandbox_state import SANDBOX_COMMANDS, follow_logs
from openshell_cli.commands.ssh import ssh_config_block, ssh_transport
from openshell_cli.errors import CliError
from openshell_cli.output import OUTPUT_OPTION, output_option, plural, render
from openshell_cli.session import GATEWAY_OPTION, WORKSPACE_OPTION

READY_TIMEOUT = 120.0  # seconds create waits for READY
EXEC_TIMED_OUT = 124  # exit status of 'sandbox exec --timeout' when the command was killed


def _kv(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def _hosts(values: tuple[str, ...]) -> list[str]:
    import ipaddress

    for item in values:
        name, sep, ip = item.partition(":")
        try:
            if not sep or not name:
                raise ValueError
            ipaddress.ip_address(ip)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not NAME:IP (e.g. api.example.test:10.199.0.2)", param_hint="--add-host") from None
    return list(values)


def _read_policy(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    from openshell.policy import PolicyError, parse_policy
    from openshell.policy.yamlio import MAX_DOCUMENT_BYTES

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)  # no further: /dev/zero must not fill memory
    except OSError as exc:
        raise CliError(f"cannot read policy file {path!r}: {exc.strerror}; pass an existing YAML file to --policy") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CliError(f"policy file {path} is larger than {MAX_DOCUMENT_BYTES} bytes; a policy is a small YAML document")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"invalid policy {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    try:
        parse_policy(text)
    except PolicyError as exc:
        raise CliError(f"invalid policy {path}: {exc}  (check it with 'openshell policy validate {path}')") from None
    return text


def _record_row(rec, output: str = "json") -> dict:
    """One sandbox as a row; labels stay a map except in tables (``k=v,k=v``)."""
    labels = dict(sorted(rec.labels.items()))
    return {
        "name": rec.name,
        "id": rec.id,
        "phase": rec.phase,
        "reason": rec.reason,
        "driver": rec.driver,
        "created": rec.created,
        "labels": ",".join(f"{k}={v}" for k, v in labels.items()) if output == "table" else labels,
    }


def run_exec(client, name: str, argv: list[str], *, env: dict, workdir: Optional[str], timeout: Optional[float], forward_stdin: bool) -> int:
    """Run ``argv`` in sandbox ``name``, stream its output to ours; return its exit code."""
    code = 255
    if forward_stdin and sys.stdin is not None and not sys.stdin.isatty():
        # Streamed (ExecSandboxInteractive): the command starts at once, reads our
        # stdin as it comes, and the exec ends when the command ends even if our
        # stdin never closes.
        from openshell_cli.interactive import StdinPump

        pump = StdinPump()
        events = client.exec_interactive(name, argv, iter(pump), env=env, workdir=workdir, timeout=timeout)
    else:
        pump = None
        events = client.exec(name, argv, env=env, workdir=workdir, timeout=timeout)
    try:
        code = _print_events(events)
    finally:
        if pump is not None:
            pump.stop()
    return code


def _print_events(events) -> int:
    """Write stdout/stderr events to ours; return the exit code (255 without one)."""
    code = 255
    for ev in events:
        if ev.kind == "stdout":
            sys.stdout.buffer.write(ev.data)
            sys.stdout.buffer.flush()
        elif ev.kind == "stderr":
            sys.stderr.buffer.write(ev.data)
            sys.stderr.buffer.flush()
        elif ev.kind == "exit":
            code = ev.exit_code if ev.exit_code is not None else 255
    return code


def _stdin_chunks():
    """Our stdin as chunks, or None when it is a terminal (nothing to forward)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None

    def gen():
        fd = sys.stdin.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            yield data

    return gen()


def _workdir_path(client, gateway: Optional[str], name: str) -> Optional[str]:
    """Host path of a local sandbox's workdir (None when the gateway is not local)."""
    from openshell.client.config import load_gateway_config

    try:
        state = load_gateway_config(gateway).metadata.get("state_dir")
        if not state:
            return None
        sid = client.get_sandbox(name).id
    except Exception:  # noqa: BLE001 - the delete reports the real error
        return None
    return str(Path(state) / "sandboxes" / sid / "workdir")


@click.group()
def sandbox() -> None:
    """Create and use sandboxes.

    \b
    Examples:
      openshell sandbox create --policy policy.yaml --add-host up.example.test:10.199.1.2 -- curl -sS http://up.example.test:8080/
      openshell sandbox exec demo -- id
      openshell sandbox delete demo
    """


def _limit_option(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """Check --cpu/--memory/--disk with the gateway's parser, so a bad value is a usage error naming the flag."""
    if value is None:
        return None
    from openshell.resources import MIN_MEMORY, QuantityError, parse_bytes, parse_cpu, parse_disk

    try:
        if param.name == "cpu":
            parse_cpu(value)
        elif param.name == "disk":
            parse_disk(value)
        else:
            parse_bytes(value, what="memory", minimum=MIN_MEMORY)
    except QuantityError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _image_from(source: str, gateway: str | None) -> str:
    """The image reference for ``--from``: a Dockerfile or a directory holding one is
    built first in the local docker engine (the docker driver's plugin); anything else
    is sent as an image reference.

    :raises CliError: a Dockerfile for a gateway that does not run its sandboxes in this
        machine's engine (a remote one, e.g. in a cluster, or a local one of another driver).
    """
    if not source or not (os.path.isfile(source) or os.path.isdir(source)):
        return source
    from openshell.client.config import GatewayConfigError, active_name, load_gateway_config

    name = gateway or active_name()
    try:
        meta = load_gateway_config(name).metadata if name else {}
    except GatewayConfigError:
        meta = {}
    if name and meta and (not meta.get("state_dir") or meta.get("driver", "docker") != "docker"):
        where = "runs elsewhere (added with 'gateway add')" if not meta.get("state_dir") else f"uses the {meta.get('driver')} driver"
        raise CliError(
            f"--from {source}: a Dockerfile is built in this machine's docker engine, which only a local gateway with the "
            f"docker driver uses; gateway '{name}' {where}: build the image where its sandboxes run (Kubernetes: "
            "deploy/docker/build_images.py or your registry) and pass its reference"
        )
    try:
        from openshell_plugin_docker.commands import build_image
    except ImportError:
        raise CliError(f"--from {source}: building a Dockerfile needs the docker driver plugin (openshell-plugin-docker)") from None
    return build_image(source)


@sandbox.command("create")
@click.option("--name", help="Sandbox name (default: two random words).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), help="Policy YAML (default: deny all network, see 'openshell policy default').")
@click.option("--add-host", "hosts", multiple=True, metavar="NAME:IP", help="Extra /etc/hosts entry, also used by the proxy's resolver.")
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Environment variable for every process in the sandbox.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Label for 'sandbox list --selector'.")
@click.option("--detach", "-d", is_flag=True, help="Return once READY without running a command.")
@click.option("--no-keep", is_flag=True, help="Delete the sandbox when COMMAND exits (or on Ctrl-C); the exit code stays COMMAND's.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=READY_TIMEOUT, show_default=True, help="Seconds to wait for READY.")
@click.option("--agent", "agent_name", help="Run this agent plugin (default: the agent COMMAND starts, e.g. 'claude').")
@click.option("--no-agent-policy", is_flag=True, help="Do not merge the agent's network rules into the policy.")
@click.option("--upload", "uploads", multiple=True, metavar="LOCAL[:DEST]", help="Upload LOCAL into DEST (default /sandbox) before COMMAND starts; repeatable.")
@click.option("--no-git-ignore", is_flag=True, help="With --upload: also send files .gitignore excludes.")
@click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="NAME",
    help="Attach provider NAME: its credentials appear as openshell:resolve:env:VAR placeholders; repeatable.",
)
@click.option("--no-auto-providers", is_flag=True, help="With an agent COMMAND: do not create or attach the providers it needs.")
@click.option("--cpu", callback=_limit_option, metavar="CORES", help="CPU limit in cores, e.g. 1.5 or 500m (default: unlimited).")
@click.option("--memory", callback=_limit_option, metavar="SIZE", help="Memory limit, e.g. 512Mi, 2Gi or 500M (default: 8Gi).")
@click.option("--template", "template_name", default="", metavar="NAME", help="Start from this template (see 'openshell template list'); the options here win.")
@click.option("--disk", callback=_limit_option, metavar="SIZE", help="Size of the workdir /sandbox, e.g. 2Gi (default: 10Gi).")
@click.option(
    "--from",
    "from_",
    default="",
    metavar="IMAGE|Dockerfile|DIR",
    help="Sandbox image (docker and kubernetes drivers): an image reference, or (docker) a Dockerfile or a directory holding one, built here first.",
)
@output_option("With --detach (or no COMMAND): print the READY sandbox's record on stdout in this format, for scripts.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def create(
    name,
    policy_file,
    hosts,
    envs,
    labels,
    detach,
    no_keep,
    gateway,
    timeout,
    agent_name,
    no_agent_policy,
    uploads,
    no_git_ignore,
    providers,
    no_auto_providers,
    command,
    cpu,
    memory,
    template_name,
    disk,
    from_,
    output,
) -> None:
    """Create a sandbox, wait until it is READY, and run COMMAND in it.

    With COMMAND, exits with COMMAND's exit code (the sandbox stays; delete it
    with 'openshell sandbox delete', or pass --no-keep to delete it when
    COMMAND exits). Starts the local gateway when none runs. Ctrl-C before
    the sandbox is READY (and its uploads are done) deletes it again.

    When COMMAND starts an agent plugin (claude, codex, opencode, openclaw, see
    'openshell agents list'), the agent's network rules are merged into the
    policy (shown; your --policy wins on equal rule keys), it is pointed at
    https://inference.local when an inference route is set, and it runs with
    a TTY when this terminal is one.

    \b
    Example:
      openshell sandbox create --name demo --policy examples/quickstart/policy.yaml \\
          --add-host up.example.test:10.199.1.2 -- curl -sS http://up.example.test:8080/
      openshell sandbox create -- claude
      openshell sandbox create -- codex exec --skip-git-repo-check "say hi"
      openshell sandbox create --provider work-github -- gh repo list
      openshell sandbox create --no-keep -- python3 -c 'print(42)'
      openshell sandbox create --detach -o json | jq -r .name

    Agents get the providers their plugin needs: an existing provider of each
    type, else one made from your environment (e.g. ANTHROPIC_API_KEY); a
    missing one is a warning. --no-auto-providers turns this off.
    """
    if detach and command:
        # It used to be dropped silently: the user thought COMMAND ran in the background.
        raise click.UsageError(
            f"--detach runs no COMMAND (got {' '.join(command)[:60]!r}): drop --detach to run it and wait, "
            "or create with --detach and start it with 'openshell sandbox exec NAME -- COMMAND'"
        )
    if no_keep and (detach or not command):
        raise click.UsageError("--no-keep needs a COMMAND (and no --detach): the sandbox is deleted when COMMAND exits")
    if output != "table" and command and not detach:
        raise click.UsageError("-o json|yaml prints the sandbox's record: use it with --detach or without COMMAND (COMMAND's output is its own)")
    upload_specs = [_split_upload(u) for u in uploads]
    image = _image_from(from_, gateway)
    policy_yaml = _read_policy(policy_file)
    env = _kv(envs, "--env")
    label_map = _kv(labels, "--label")
    extra_hosts = _hosts(hosts)
    agent_cls = agent_flow.resolve_for_create(agent_name, command)
    client = session.client(gateway, start_local=True)
    launch = None
    if agent_cls is not None:
        launch = agent_flow.plan_launch(
            agent_cls,
            command or (agent_cls.name,),
            policy_text=policy_yaml,
            user_env=env,
            routed=agent_flow.inference_route(client),
            use_fragment=not no_agent_policy,
        )
        agent_flow.show_launch(launch)
        policy_yaml, env, command = launch.policy_yaml, launch.env, tuple(launch.argv)
    attach = list(dict.fromkeys(providers))
    if agent_cls is not None and not no_auto_providers:
        attach = apply_auto_providers(client, agent_cls, attach)
    from rich.console import Console

    created: list[str] = []  # the sandbox's name once the gateway has it
    try:
        with Console(stderr=True).status("creating sandbox…") as status:
            # Ctrl-C waits for CreateSandbox's answer: without the name the
            # gateway picked, the sandbox could not be deleted again.
            with interrupts.deferred():
                limits = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("disk", disk)) if v is not None}
                rec = client.create_sandbox(
                    name=name or "",
                    policy_yaml=policy_yaml,
                    extra_hosts=extra_hosts,
                    env=env,
                    labels=label_map,
                    providers=attach,
                    limits=limits,
                    workload_template=template_name,
                    image=image,
                )
                created.append(rec.name)
            status.update(f"sandbox {rec.name}: waiting for READY…")
            try:
                rec = client.wait_ready(rec.name, timeout=timeout)
            except WaitTimeout as exc:
                if no_keep:
                    raise
                # Not deleted: it may still come up (a slow first start); say so, or a
                # script that sees exit 1 leaks a running sandbox without knowing.
                raise CliError(f"{exc}; the sandbox is kept and may still become READY: delete it with 'openshell sandbox delete {rec.name}'") from None
        click.echo(f"sandbox {rec.name} is READY", err=True)
        for i, (local, dest) in enumerate(upload_specs):  # before COMMAND starts
            try:
                _do_upload(client, rec.name, local, dest, git_ignore=not no_git_ignore)
            except Exception as exc:
                if no_keep:
                    _delete_after(client, rec.name, "upload failed")
                    created.clear()  # deleted: nothing for the handler below to do
                    raise
                # Say what is left running: a script that sees exit 1 must not leak it unknowingly.
                where = _address_args(gateway)
                flags = " --no-git-ignore" if no_git_ignore else ""
                retry = "; ".join(f"openshell sandbox upload {rec.name} {shlex.quote(lo)} {shlex.quote(de)}{flags}{where}" for lo, de in upload_specs[i:])
                kept = (
                    f"sandbox {rec.name} is kept (READY) and nothing was run in it; upload again with:"
                    f" {retry} (or delete it: openshell sandbox delete {rec.name}{where})"
                )
                if isinstance(exc, CliError):
                    raise CliError(f"{exc}\n{kept}") from exc
                click.echo(kept, err=True)  # an unexpected error: still shown by the handler, with --debug's traceback
                raise
        if launch is not None and launch.home_files:
            agent_flow.write_home_files(client, rec.name, launch.home_files)
    except KeyboardInterrupt:
        if created:
            _delete_after(client, created[0], "interrupted")
        raise
    except BaseException:
        if created and no_keep:
            _delete_after(client, created[0], "not started")
        raise
    if not command or detach:
        if output != "table":
            render(_record_row(rec, output), output)
        return
    try:
        if launch is not None:
            code = agent_flow.run_agent(client, rec.name, list(command), run_exec)
        else:
            code = run_exec(client, rec.name, list(command), env={}, workdir=None, timeout=None, forward_stdin=True)
    except KeyboardInterrupt:
        if no_keep:
            _delete_after(client, rec.name, "interrupted")
        else:
            click.echo(f"interrupted; sandbox {rec.name} is kept: delete it with 'openshell sandbox delete {rec.name}' (or create with --no-keep)", err=True)
        raise
    except BaseException:
        if no_keep:
            _delete_after(client, rec.name, "failed")
        raise
    if no_keep:
        _delete_after(client, rec.name, f"exit {code}")
    sys.exit(code)


def _address_args(gateway: Optional[str]) -> str:
    """`` --gateway G --workspace W`` as this command was given them (empty when not), for commands it prints."""
    from openshell_cli.session import current_workspace

    workspace = current_workspace()
    return (f" --gateway {shlex.quote(gateway)}" if gateway else "") + (f" --workspace {shlex.quote(workspace)}" if workspace else "")


def _delete_after(client, name: str, why: str) -> bool:
    """Delete sandbox ``name`` that ``create`` made (``why``: what happened, e.g. "interrupted").

    Prints one line on stderr either way; when the delete fails (or a second
    Ctrl-C stops it), the line names the sandbox left and the command to delete it.

    :returns: True when the sandbox is gone.
    """
    click.echo(f"{why}: deleting sandbox {name}…", err=True)
    try:
        client.delete_sandbox(name, allow_missing=True)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported as one line
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        click.echo(f"error: sandbox {name} may be left behind ({reason}); delete it with 'openshell sandbox delete {name}'", err=True)
        return False
    click.echo(f"deleted sandbox {name}", err=True)
    return True


@sandbox.command("list")
@click.option("--selector", "-l", "selector", multiple=True, metavar="K=V", help="Only sandboxes with these labels.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def list_(selector, gateway, output) -> None:
    """List sandboxes.

    \b
    Example:
      openshell sandbox list -l team=ml -o json
    """
    client = session.client(gateway)
    wanted = _kv(selector, "--selector")
    rows = [_record_row(r, output) for r in client.list_sandboxes(labels=wanted)]
    empty = "no sandboxes match the selector" if wanted else "no sandboxes; create one with 'openshell sandbox create'"
    render(rows, output, columns=("name", "phase", "driver", "created", "labels"), empty=empty)


@sandbox.command("get")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def get(name, gateway, output) -> None:
    """Show one sandbox."""
    client = session.client(gateway)
    render(_record_row(client.get_sandbox(name), output), output if output != "table" else "yaml")


@sandbox.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Extra environment variable for this command.")
@click.option("--workdir", help="Directory to run in (default /sandbox).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds (> 0); the command is killed after it and exec exits 124.")
@click.option("--tty", "-t", "use_tty", is_flag=True, help="Run under a PTY (interactive programs); stdout and stderr merge.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name, envs, workdir, timeout, use_tty, gateway, command) -> None:
    """Run COMMAND in sandbox NAME with the sandbox's isolation; exits with its code.

    Our stdin is forwarded when it is not a terminal. With --tty the command
    gets a PTY that follows our window size, our stdin is streamed to it and
    Ctrl-C reaches it; without, stdout and stderr stay separate.

    \b
    Example:
      echo hi | openshell sandbox exec demo -- cat
      openshell sandbox exec --tty demo -- python3
    """
    client = session.client(gateway)
    started = time.monotonic()
    if use_tty:
        from openshell_cli.interactive import grpc_tty_exec

        code = grpc_tty_exec(client, name, list(command), env=_kv(envs, "--env"), workdir=workdir, timeout=timeout)
    else:
        code = run_exec(client, name, list(command), env=_kv(envs, "--env"), workdir=workdir, timeout=timeout, forward_stdin=True)
    if timeout is not None and code == EXEC_TIMED_OUT and time.monotonic() - started >= timeout:
        # 124 alone is ambiguous (the command may exit 124 itself); say which it was
        click.echo(f"openshell: command timed out after {timeout:g} s in sandbox '{name}' (exit {EXEC_TIMED_OUT})", err=True)
    sys.exit(code)


@sandbox.command("logs")
@click.argument("name")
@click.option("-n", "--lines", type=click.IntRange(1, 10_000), default=100, show_default=True, help="How many of the newest lines.")
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]), default=None, help="Minimum level.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they arrive, until Ctrl-C.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
@OUTPUT_OPTION
def logs(name, lines, level, follow, gateway, output) -> None:
    """Show a sandbox's supervisor log: every proxy decision (ALLOWED/DENIED with
    the reason), policy loads and lifecycle events.

    \b
    Examples:
      openshell sandbox logs demo --level warning     # what the policy denied
      openshell sandbox logs demo -f -o json          # stream as JSON lines
    """
    import datetime
    import json

    client = session.client(gateway)
    if follow:  # the gateway streams new lines (WatchSandbox)
        follow_logs(client, name, lines=lines, level=level or "", output=output)
        return

    def show(rows: list[dict]) -> None:
        for r in rows:
            if output == "json":
                click.echo(json.dumps(r))
            elif output == "yaml":
                render([r], "yaml")
            else:
                ts = datetime.datetime.fromtimestamp(r["time"], datetime.timezone.utc).strftime("%H:%M:%S")
                click.echo(f"{ts} {r['level'].upper():7} {r['message']}")

    rows = client.logs(name, lines=lines, min_level=level or "")
    if not rows and output == "table":
        click.echo("no log lines yet")
    show(rows)


@sandbox.command("delete")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Delete every sandbox of the workspace (asks first on a terminal).")
@click.option("--yes", "-y", is_flag=True, help="With --all: do not ask for confirmation.")
@click.option("--keep-workdir", is_flag=True, help="Keep the sandbox's /sandbox directory on the host.")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def delete(names, all_, yes, keep_workdir, gateway) -> None:
    """Delete sandboxes: processes, namespaces, mounts and workdir.

    --all asks for confirmation when stdin is a terminal (scripts, whose stdin
    is not, are not asked); --yes skips the question.

    \b
    Examples:
      openshell sandbox delete demo
      openshell sandbox delete --all --yes
    """
    if not names and not all_:
        raise click.UsageError("name a sandbox or pass --all")
    if names and all_:
        raise click.UsageError("pass sandbox names or --all, not both")
    client = session.client(gateway)
    if all_:
        names = tuple(r.name for r in client.list_sandboxes())
        if not names:
            click.echo("no sandboxes to delete")
            return
        if not yes and sys.stdin is not None and sys.stdin.isatty():
            shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            what = "" if keep_workdir else " and their workdirs"
            if not click.confirm(f"Delete {plural(len(names), 'sandbox', 'sandboxes')} ({shown}){what}?", err=True):
                click.echo("nothing deleted", err=True)
                sys.exit(1)
    failed = False
    for n in names:
        try:
            kept = _workdir_path(client, gateway, n) if keep_workdir else None
            client.delete_sandbox(n, keep_workdir=keep_workdir)
            click.echo(f"deleted {n}" + (f"; its workdir is kept at {kept}" if kept else ""))
        except Exception as exc:  # noqa: BLE001 - report each, continue
            click.echo(f"error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


# --------------------------------------------------------------------------- interactive access


def _split_upload(spec: str) -> tuple[str, str]:
    """``LOCAL[:DEST]`` → ``(LOCAL, DEST)``; DEST defaults to /sandbox and must be absolute.

    LOCAL is checked as ``sandbox upload`` checks it (:func:`_upload_source_problem`), before the sandbox is created.
    """
    local, sep, dest = spec.rpartition(":")
    if not sep or not dest.startswith("/"):
        local, dest = spec, "/sandbox"
    if not local:
        raise click.BadParameter(f"{spec!r}: LOCAL must exist (LOCAL[:DEST], DEST absolute)", param_hint="--upload")
    problem = _upload_source_problem(local)
    if problem is not None:
        hint = " (LOCAL[:DEST], DEST absolute)" if "does not exist" in problem else ""
        raise click.BadParameter(f"LOCAL {problem}{hint}", param_hint="--upload")
    return local, dest


def _upload_source_problem(local: str) -> Optional[str]:
    """Why LOCAL cannot be uploaded (missing, a name or path too long, a symlink), or None."""
    from openshell_cli.transfer import TransferError, check_upload_source

    try:
        check_upload_source(local)
    except TransferError as exc:
        return str(exc)
    return None


def _upload_local(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Check ``sandbox upload``'s LOCAL: a usage error naming it when it cannot be uploaded."""
    problem = _upload_source_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _do_upload(client, name: str, local: str, dest: str, *, git_ignore: bool) -> None:
    from rich.console import Console

    from openshell_cli.transfer import TransferError, upload

    transport = ssh_transport(client, name)
    try:
        with Console(stderr=True).status(f"uploading {local} to {name}:{dest}…") as status:
            stats = upload(
                transport, Path(local), dest, git_ignore=git_ignore, progress=lambda sent: status.update(f"uploading {local} to {name}:{dest}… {_human(sent)}")
            )
    except TransferError as exc:
        raise CliError(str(exc)) from exc
    except KeyboardInterrupt:
        # tar in the sandbox has unpacked what it got: say so rather than leave a silent partial copy.
        click.echo(f"upload interrupted: {name}:{dest} may hold a partial copy of {local}; upload again to complete it", err=True)
        raise
    finally:
        transport.close()
    click.echo(f"uploaded {plural(stats.files, 'file')} ({_human(stats.bytes)}) to {name}:{dest}", err=True)


@sandbox.command("connect")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def connect(name, gateway) -> None:
    """Open an interactive shell in sandbox NAME (SSH through the gateway).

    The shell has a PTY that follows your window size; Ctrl-C reaches the
    remote process; exits with the shell's exit status. It runs with exactly
    the sandbox's isolation (user, Landlock, seccomp, network).

    \b
    Example:
      openshell sandbox connect demo
    """
    from openshell_cli.interactive import ssh_pty_session

    client = session.client(gateway)
    transport = ssh_transport(client, name)
    try:
        code = ssh_pty_session(transport)
    finally:
        transport.close()
    sys.exit(code)


@sandbox.command("ssh-config")
@click.argument("name")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def ssh_config(name, gateway) -> None:
    """Print an OpenSSH 'Host openshell-NAME' block for ssh, scp and sftp.

    \b
    Example:
      openshell sandbox ssh-config demo >> ~/.ssh/config
      ssh openshell-demo id; scp file.txt openshell-demo:/sandbox/; sftp openshell-demo
    """
    if not gateway:
        from openshell.client.config import active_name

        gateway = active_name()
    session.client(gateway).get_sandbox(name)  # a typo fails here, not later inside ssh
    click.echo(ssh_config_block(name, gateway), nl=False)


@sandbox.command("upload")
@click.argument("name")
@click.argument("local", type=click.Path(file_okay=True, dir_okay=True), callback=_upload_local)
@click.argument("dest", required=False, default="/sandbox")
@click.option("--no-git-ignore", is_flag=True, help="Also send files that .gitignore excludes (when LOCAL is in a git repository).")
@GATEWAY_OPTION
@WORKSPACE_OPTION
def upload_cmd(name, local, dest, no_git_ignore, gateway) -> None:
    """Copy LOCAL (file or directory) into DEST in sandbox NAME (default /sandbox).

    A directory's contents land in DEST. A file lands inside DEST when DEST
    is a directory (or ends with '/'), else as DEST itself (like cp and scp).
    Inside a git repository, files .gitignore excludes are skipped. Modes and
    symlinks are kept; a symlink pointing outside LOCAL is refused, and so is
    a LOCAL that is itself a symlink (name what it points to). tar runs
    inside the sandbox, as the sandbox user. An upload that fills the
    sandbox's workdir fails naming it: create the sandbox with a larger --disk.

    \b
    Example:
      openshell sandbox upload demo ./src /sandbox/src
      openshell sandbox upload demo ./lib.so /sandbox/lib/renamed.so
    """
    _do_upload(session.client(gateway), name, local, dest, git_ignore=not no_git_ignore)


@sandbox.command("download")
@click.argument("name")
@click.argument("path")
@click.argument("dest", required=False, default=".", type=click.Path())
@GATEWAY_OPTION
@WORKSPACE_OPTION
def download_cmd(name, path, dest, gateway) -> None:
    """Copy PATH (file or directory) from sandbox NAME to DEST here (default .).

    A directory's contents land in directory DEST. A file lands inside DEST
    when DEST is a directory (or ends with '/'), else as DEST itself (like cp
    and scp).
    Members that would escape DEST (absolute names, '..', links pointing out)
    are refused: what the sandbox sends is not trusted.

    Exit status: 0 when everything was copied; 3 when tar inside the sandbox
    could not read some paths (permissions, Landlock): the rest is written and
    the skipped paths are listed on stderr with tar's reason; 1 on failure
    (no such sandbox or PATH, connection lost), which removes a DEST the
    command created if it is still empty.

    \b
    Example:
      openshell sandbox download demo /sandbox/out ./out
    """
    from rich.console import Console

    from openshell_cli.transfer import TransferError, download

    client = session.client(gateway)
    transport = ssh_transport(client, name)
    try:
        with Console(stderr=True).status(f"downloading {name}:{path}…") as status:
            stats = download(transport, path, dest, progress=lambda got: status.update(f"downloading {name}:{path}… {_human(got)}"))
    except TransferError as exc:
        raise CliError(str(exc)) from exc
    except KeyboardInterrupt:
        if os.path.lexists(dest):
            click.echo(f"download interrupted: {dest} may hold a partial copy of {name}:{path}", err=True)
        raise
    finally:
        transport.close()
    if os.path.lexists(dest):
        click.echo(f"downloaded {plural(stats.files, 'file')} ({_human(stats.bytes)}) to {dest}", err=True)
    else:
        click.echo(f"nothing was downloaded; {dest} was not created", err=True)
    if not stats.complete:
        _report_skipped(stats)
        sys.exit(DOWNLOAD_INCOMPLETE)


DOWNLOAD_INCOMPLETE = 3  # exit status of 'sandbox download' when paths were skipped (1 = failed, 2 = usage)
MAX_SKIPPED_SHOWN = 20


def _report_skipped(stats) -> None:
    """Print on stderr which paths a download skipped and why (at most :data:`MAX_SKIPPED_SHOWN` lines)."""
    n = len(stats.skipped)
    click.echo(f"warning: incomplete download: tar in the sandbox could not read {plural(n, 'path')} (missing or incomplete here):", err=True)
    for s in stats.skipped[:MAX_SKIPPED_SHOWN]:
        click.echo(f"  {s.path}: {s.reason}", err=True)
    if n > MAX_SKIPPED_SHOWN:
        click.echo(f"  … and {n - MAX_SKIPPED_SHOWN} more", err=True)
    if stats.skipped_cut:
        click.echo("  (tar said more than the CLI keeps; other paths may be missing too)", err=True)


for _command in SANDBOX_COMMANDS:  # stop, start, watch
    sandbox.add_command(_command)

COMMANDS = [sandbox]
