"""A supervisor process started before its sandbox exists (create-to-READY).

Starting Python and importing what a supervisor needs (gRPC, protobuf, asyncio,
cryptography, the policy engine, the isolation plugins) is most of a sandbox's
start: ~0.2 s of CPU on an idle core, more on a busy machine. The ``local``
driver therefore keeps one *spare*: ``python -m openshell.supervisor --spare``
does those imports, then blocks reading one line from stdin. The driver hands
it a sandbox by writing ``{"config": PATH, "log": PATH}`` (JSON, one line); the
spare points stdout/stderr at that log and from then on is exactly
``python -m openshell.supervisor --config PATH``.

A spare serves one sandbox and carries nothing from before it was assigned
(it only imported modules). EOF or a malformed line on stdin ends it: the
gateway stopped, or dropped it.
"""

from __future__ import annotations

import json
import os
import sys

MAX_LINE = 8192  # bytes of the assignment line
SPARE_NICE = 10  # niceness while waiting (back to 0 once assigned)


def _warm() -> None:
    """Import the supervisor, its start-up modules and the plugins it will load.

    Failures are ignored here: the real start loads the same things again and
    reports any error in the sandbox's log (fail closed there, not here).
    """
    try:
        # Imported here, not at module level: importing them is this function's job,
        # done after main() lowered the spare's priority.
        from openshell.supervisor import launcher
        from openshell.supervisor.layers import REQUIRED_LAYERS
        from openshell.supervisor.main import _preload

        _preload()
        for name in REQUIRED_LAYERS:
            launcher.supervisor_layer_class(name)
        # The crypto backend's set-up (~4 ms on the first key) is paid here, not on
        # the way to READY; the key is dropped. (Warming the policy engine the same
        # way saves ~2 ms but keeps ~5 MiB per supervisor: not done.)
        from openshell.supervisor.sandbox_ca import SandboxCA

        SandboxCA.generate("spare")
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def _assignment(line: bytes) -> tuple[str, str] | None:
    """``(config path, log path)`` from the driver's line, or None when malformed."""
    if not line.endswith(b"\n"):
        return None  # EOF (gateway gone) or an over-long line
    try:
        job = json.loads(line)
        config, logpath = job["config"], job["log"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(config, str) and isinstance(logpath, str) and os.path.isabs(config) and os.path.isabs(logpath)):
        return None
    return config, logpath


def main() -> None:
    """Entry point for ``python -m openshell.supervisor --spare``; never returns."""
    # Warm up at low priority: a spare is started while another sandbox starts, and
    # must not slow it down on a busy machine.
    os.nice(SPARE_NICE)
    _warm()
    job = _assignment(sys.stdin.buffer.readline(MAX_LINE))
    if job is None:
        sys.exit(0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)  # a supervisor from now on (root may lower nice)
    except OSError:
        pass
    config, logpath = job
    fd = os.open(logpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    from openshell.supervisor.main import main as supervisor_main  # loaded by _warm() already

    supervisor_main(["--config", config])
