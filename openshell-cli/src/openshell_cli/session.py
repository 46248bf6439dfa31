"""Which gateway a command talks to, and the SDK client for it.

Every command that needs the gateway takes :data:`GATEWAY_OPTION` and calls
:func:`client`; both live here so command modules never borrow each other's
helpers (that is how import cycles start).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
from openshell.client.config import active_name, list_gateways
from openshell.client.sdk import OpenShellClient, OpenShellError

from openshell_cli.commands.gateway import ensure_local_gateway
from openshell_cli.errors import CliError
from openshell_cli.version_check import client as checked_client

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_GATEWAY_HELP = "Gateway name (default: the active one)."


def gateway_option(help_text: str = DEFAULT_GATEWAY_HELP) -> Callable[[F], F]:
    """The ``--gateway NAME`` option (``$OPENSHELL_GATEWAY``); passes ``gateway`` (str or None)."""
    return click.option("--gateway", envvar="OPENSHELL_GATEWAY", metavar="NAME", help=help_text)


#: ``@GATEWAY_OPTION`` on a command: the gateway it talks to
GATEWAY_OPTION = gateway_option()

_WORKSPACE_KEY = "openshell.workspace"


def _remember_workspace(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # Kept on the context (not passed to the command), so :func:`client` picks it
    # up for every command that has the option without each one forwarding it.
    if value:
        ctx.meta[_WORKSPACE_KEY] = value


#: ``@WORKSPACE_OPTION`` on a command: ``--workspace NAME`` (``$OPENSHELL_WORKSPACE``), the
#: workspace of the sandboxes, providers, templates and policies it addresses; the
#: command's :func:`client` calls address it (default: ``default``). Not passed to the command.
WORKSPACE_OPTION = click.option(
    "--workspace",
    envvar="OPENSHELL_WORKSPACE",
    metavar="NAME",
    expose_value=False,
    callback=_remember_workspace,
    help="Workspace to address (default: 'default'; see 'openshell workspace list').",
)


def current_workspace() -> str | None:
    """The ``--workspace`` of the running command, or None (the client's default, ``default``)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_WORKSPACE_KEY) if ctx is not None else None


def check_selected(gateway: str | None) -> None:
    """Fail with the fix when no gateway is named or active but some are configured.

    (With none configured at all, the SDK's "run 'openshell gateway start'" is the fix.)

    :raises CliError: no gateway selected; the message names the configured ones.
    """
    if gateway or active_name():
        return
    names = list_gateways()
    if names:
        raise CliError(f"no active gateway; run 'openshell gateway select NAME' with one of: {', '.join(names)}")


def client(gateway: str | None = None, *, start_local: bool = False, **kwargs: Any) -> OpenShellClient:
    """An SDK client for gateway ``gateway`` (default: the active one).

    It warns once on stderr when the gateway runs another OpenShell version.

    :param start_local: start the local gateway first when none is running
        (what ``sandbox create`` does for a new user).
    :param kwargs: passed to ``OpenShellClient`` (e.g. ``timeout`` in seconds);
        ``workspace`` defaults to the command's ``--workspace`` (:data:`WORKSPACE_OPTION`).
    :raises CliError: no gateway selected or configured, or the local one cannot start.
    """
    check_selected(gateway)
    workspace = current_workspace()
    if workspace and "workspace" not in kwargs:
        kwargs["workspace"] = workspace
    if start_local:
        ensure_local_gateway(gateway)
    try:
        return checked_client(gateway, **kwargs)
    except Exception as exc:  # noqa: BLE001 - config errors are user errors here
        raise CliError(str(exc)) from exc


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """SDK errors (sandbox not found, gateway down, …) become one-line CLI errors (exit 1)."""
    try:
        yield
    except OpenShellError as exc:
        raise CliError(str(exc)) from None


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with :func:`one_line_errors`."""
    with one_line_errors():
        return fn(*args, **kwargs)
