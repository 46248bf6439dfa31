"""Warn (once, on stderr) when the gateway runs another OpenShell version than this CLI.

The typical case is a gateway left running after ``pip install -U``: it keeps
serving the old code until restarted. The gateway's version comes from the first
answer of a call the command makes anyway (see ``openshell.client.versions``),
so the check costs no round trip. Policy (``openshell.client.versions.compare``):
warn when major.minor differ, or when the gateway is older by any amount.

``OPENSHELL_NO_VERSION_CHECK=1`` silences the warning.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

#: set to 1 (or true/yes) to silence the warning
SILENCE_ENV = "OPENSHELL_NO_VERSION_CHECK"

_warned = False  # one warning per process, however many clients a command opens


def local_version() -> str:
    """The OpenShell version this CLI installation runs (what ``gateway start`` would start)."""
    from openshell.client.versions import installed_version

    return installed_version()


def silenced() -> bool:
    """True when ``$OPENSHELL_NO_VERSION_CHECK`` is set to a true value (1/true/yes/on)."""
    return os.environ.get(SILENCE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def warning_line(gateway_version: str, gateway_name: str | None, local_gateway: bool, endpoint: str = "") -> str | None:
    """Return the one-line warning for ``gateway_version``, or None when no warning is due.

    :param gateway_name: the gateway's name (``openshell`` is the default one).
    :param local_gateway: True when this machine runs it (``openshell gateway stop/start`` restart it).
    :param endpoint: shown for a remote gateway.
    """
    from openshell.client.versions import compare

    if not gateway_version:  # the gateway did not say; guessing would be noise
        return None
    mine = local_version()
    verdict = compare(mine, gateway_version)
    if verdict is None:
        return None
    name = gateway_name or "openshell"
    which = f"gateway '{name}'" + (f" at {endpoint}" if endpoint and not local_gateway else "")
    head = f"warning: {which} runs OpenShell {gateway_version}, this CLI is {mine}"
    if verdict == "newer":
        fix = "upgrade this CLI (openshell-cli and openshell-core) to match"
    elif local_gateway:
        flag = "" if name == "openshell" else f" --name {name}"
        fix = f"restart it to run {mine}: openshell gateway stop{flag} && openshell gateway start{flag}"
    else:
        fix = "upgrade the gateway (or use a CLI of its version)"
    return f"{head}; {fix} (set {SILENCE_ENV}=1 to silence)"


def report(gateway_version: str, gateway_name: str | None, endpoint: str = "") -> None:
    """Print the warning for ``gateway_version`` on stderr, at most once per process.

    Never raises: a broken check must not break the command.
    """
    global _warned
    if _warned or silenced():
        return
    try:
        line = warning_line(gateway_version, gateway_name, _is_local(gateway_name), endpoint)
    except Exception:  # noqa: BLE001
        return
    if line is not None:
        _warned = True
        # "\r\n" on a terminal: `sandbox exec --tty` may have it in raw mode by now
        click.echo(line + ("\r" if sys.stderr.isatty() else ""), err=True)


def _is_local(gateway_name: str | None) -> bool:
    from openshell.client.config import GatewayConfigError, load_gateway_config

    try:
        return bool(load_gateway_config(gateway_name).metadata.get("state_dir"))
    except GatewayConfigError:
        return True


def client(gateway: str | None = None, **kwargs: Any):
    """``OpenShellClient.from_config(gateway, **kwargs)`` whose first answer triggers :func:`report`.

    :raises openshell.client.sdk.GatewayUnavailable: nothing configured for ``gateway``.
    """
    from openshell.client.sdk import OpenShellClient

    holder: list[Any] = []

    def seen(version: str) -> None:
        sdk = holder[0] if holder else None
        report(version, sdk.gateway_name if sdk else gateway, sdk.endpoint if sdk else "")

    sdk = OpenShellClient.from_config(gateway, on_gateway_version=None if silenced() else seen, **kwargs)
    holder.append(sdk)
    return sdk
