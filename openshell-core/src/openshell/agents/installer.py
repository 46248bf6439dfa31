"""Running an installer (npm, pip) for an agent: its output streamed, its failure one line.

Used by :mod:`openshell.agents.npm` (agent programs) and
:mod:`openshell.agents.node_runtime` (the pinned Node.js runtime).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

#: seconds ``npm install`` may take before it is killed
NPM_TIMEOUT = 900.0


class NpmInstallError(RuntimeError):
    """Installing an agent program failed; the message says why and what to do."""


_NPM_NOISE = ("A complete log", "command failed", "error code", "error path", "error command")


def _npm_reason(tail: list[str]) -> str:
    """The most telling line of npm's output: its first error line that is not boilerplate."""
    errors = [t for t in tail if t.startswith("npm error") or "ERR" in t]
    useful = [t for t in errors if not any(n in t for n in _NPM_NOISE)]
    return (useful or errors or tail or [""])[0]


def run_streamed(
    cmd: list[str],
    on_output: Callable[[str], None] | None,
    *,
    env: dict[str, str] | None = None,
    what: str = "npm install",
    hint: str = "check the network and the package name",
) -> None:
    """Run an installer (npm, pip) with umask 022, stream its lines to ``on_output``.

    :param env: variables set on top of this process's environment.
    :param what: the command's name in errors; ``hint``: what the user should check.
    :raises NpmInstallError: it did not start, exited non-zero, or ran past ``NPM_TIMEOUT`` seconds.
    """
    env = {**os.environ, **(env or {})}
    env.setdefault("npm_config_update_notifier", "false")
    tail: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509 - only sets the umask
        )
    except OSError as exc:
        raise NpmInstallError(f"cannot run {what}: {exc}") from None
    assert proc.stdout is not None
    timer = threading.Timer(NPM_TIMEOUT, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if not line:
                continue
            tail = (tail + [line])[-40:]
            if on_output is not None:
                on_output(line)
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        raise NpmInstallError(f"{what} failed (exit {code}): {_npm_reason(tail)}; {hint}")
