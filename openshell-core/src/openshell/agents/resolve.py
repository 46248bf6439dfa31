"""Which agent plugin a sandbox command starts (``openshell sandbox create -- claude``)."""

from __future__ import annotations

import os
from typing import Any

from openshell.plugin.kinds import Agent
from openshell.plugin.loader import get_registry

#: first-party agents: command name -> the distribution that provides its plugin
FIRST_PARTY_AGENTS: dict[str, str] = {
    "claude": "openshell-plugin-claude",
    "opencode": "openshell-plugin-opencode",
    "codex": "openshell-plugin-codex",
    "openclaw": "openshell-plugin-openclaw",
}


class UnknownAgent(LookupError):
    """No installed agent plugin answers to the name; the message lists the installed ones."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        have = ", ".join(installed) if installed else "none"
        dist = FIRST_PARTY_AGENTS.get(name, f"openshell-plugin-{name}")
        super().__init__(
            f"no agent plugin named {name!r} is installed (installed agents: {have}); install it with 'pip install {dist}' and check 'openshell agents list'"
        )


class AgentNotInstalled(LookupError):
    """The agent plugin is installed but its program is not."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"agent {name!r} has a plugin but its program is not installed; run 'openshell agents install {name}'")


def command_names(name: str, cls: type[Agent]) -> set[str]:
    """Words that start agent ``cls`` registered as ``name``: the name, ``executable``, basename of ``argv()[0]``."""
    names = {name}
    exe = getattr(cls, "executable", "")
    if exe:
        names.add(exe)
    try:
        argv = cls().argv([])
        if argv:
            names.add(os.path.basename(argv[0]))
    except Exception:  # noqa: BLE001 - a broken plugin resolves by its name only
        pass
    return names


def resolve_agent(command: str, registry: Any = None, *, explicit: bool = False) -> type[Agent] | None:
    """Return the agent class that ``command`` (an ``argv[0]`` or an agent name) starts.

    Matches the basename of ``command`` against each registered agent's name,
    its ``executable`` and the basename of ``argv()[0]``.

    :param registry: a plugin registry (default ``get_registry()``).
    :param explicit: the user named an agent (``--agent``), so no match is an error.
    :returns: the class, or None when ``command`` is an ordinary program.
    :raises UnknownAgent: no plugin matches and ``explicit`` is set or ``command``
        is a first-party agent whose plugin is not installed.
    """
    if registry is None:
        registry = get_registry()
    base = os.path.basename(command)
    classes = registry.classes("agents")
    for name, cls in sorted(classes.items()):
        if base in command_names(name, cls):
            return cls
    if explicit or base in FIRST_PARTY_AGENTS:
        raise UnknownAgent(base, sorted(classes))
    return None
