"""Agent support shared by the CLI and agent plugins (DESIGN.md §3).

- :class:`NpmAgent` — an ``Agent`` base for programs published on npm: argv,
  install location, ``detect()``, and a policy fragment built from its API hosts.
- :func:`npm_install` — install an agent program where sandboxes can read it
  (``/usr/local/lib/openshell/agents/<name>``, symlinked into ``/usr/local/bin``).
- :func:`resolve_agent` — which registered agent a command's ``argv[0]`` starts.
- :func:`merge_fragment` — add an agent's ``network_policies`` to a sandbox policy.
"""

from __future__ import annotations

from openshell.agents.fragment import MergedPolicy, merge_fragment
from openshell.agents.npm import (
    AGENTS_ROOT,
    BIN_DIR,
    InstallResult,
    NpmAgent,
    NpmInstallError,
    npm_install,
)
from openshell.agents.resolve import FIRST_PARTY_AGENTS, AgentNotInstalled, UnknownAgent, resolve_agent

__all__ = [
    "AGENTS_ROOT",
    "BIN_DIR",
    "FIRST_PARTY_AGENTS",
    "AgentNotInstalled",
    "InstallResult",
    "MergedPolicy",
    "NpmAgent",
    "NpmInstallError",
    "UnknownAgent",
    "merge_fragment",
    "npm_install",
    "resolve_agent",
]
