"""How a supervisor process ended, for the ERROR reason of its sandbox.

Only a process's parent learns its exit status, and a supervisor's parent is the
fork server (or, started cold, the gateway): whichever reaps it writes
``supervisor.exit`` (JSON ``{"pid": N, "code": C}`` or ``{"pid": N, "signal": S}``)
into the sandbox's directory first, while the process is still a zombie, so
anyone who sees it gone finds the file. Until it is reaped, the kernel shows the
status of a zombie in ``/proc/<pid>/stat``. A supervisor whose parent is neither
(its fork server ended with an earlier gateway) leaves neither: then how it ended
is unknown.

Standard library only: the fork server imports this.
"""

from __future__ import annotations

import json
import os
import signal
import threading

EXIT_FILE = "supervisor.exit"


def reap(pid: int, exit_file: str | os.PathLike[str] | None = None) -> int | None:
    """Collect ``pid`` (a child of ours) if it exited, writing its status to
    ``exit_file`` (when given) before it is collected.

    :returns: the pid collected, or None (it has not exited, or is not our child).
    """
    return _collect(os.P_PID, pid, lambda _: exit_file)


def reap_any(exit_file_of) -> int | None:
    """Collect one child that exited; ``exit_file_of(pid)`` names the file to record
    its status in (None: none). :returns: its pid, or None when none exited."""
    return _collect(os.P_ALL, 0, exit_file_of)


def _collect(idtype: int, pid: int, exit_file_of) -> int | None:
    """Look at an exited child without collecting it (``WNOWAIT``), write its record to
    ``exit_file_of(its pid)`` (None: none), then collect it. :returns: its pid, or None."""
    try:
        info = os.waitid(idtype, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # not our child, or collected already
        return None
    if info is None or info.si_pid == 0:
        return None
    path = exit_file_of(info.si_pid)
    if path is not None:
        write(path, info.si_pid, info.si_code, info.si_status)
    try:
        os.waitpid(info.si_pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return info.si_pid


def write(path: str | os.PathLike[str], pid: int, si_code: int, si_status: int) -> None:
    """Write the record of a ``waitid`` result (atomically; never raises: a sandbox
    directory that is gone takes no record)."""
    if si_code == os.CLD_EXITED:
        record: dict[str, object] = {"pid": pid, "code": si_status}
    else:  # CLD_KILLED, CLD_DUMPED
        record = {"pid": pid, "signal": si_status, "core": si_code == os.CLD_DUMPED}
    tmp = f"{os.fspath(path)}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read(path: str | os.PathLike[str], pid: int) -> dict | None:
    """The record of ``pid`` in ``path``, or None (no file, another pid's, unreadable)."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("pid") != pid:
        return None
    return record


def from_zombie(pid: int) -> dict | None:
    """The record of ``pid`` while it is a zombie (``/proc/<pid>/stat``'s exit code,
    Linux 3.5+), or None (alive, gone, or not shown to us)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state) of proc(5); exit_code is field 52
    if len(fields) < 50 or fields[0] != "Z":
        return None
    try:
        status = int(fields[49])
    except ValueError:
        return None
    if os.WIFSIGNALED(status):
        return {"pid": pid, "signal": os.WTERMSIG(status), "core": os.WCOREDUMP(status)}
    if os.WIFEXITED(status):
        return {"pid": pid, "code": os.WEXITSTATUS(status)}
    return None


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 99`` for a number without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe(record: dict) -> str:
    """``was killed by signal 9 (SIGKILL)``, ``exited with code 1``."""
    if "signal" in record:
        sig = int(record["signal"])
        return f"was killed by signal {sig} ({signal_name(sig)})" + (", core dumped" if record.get("core") else "")
    return f"exited with code {int(record.get('code', 0))}"


def how_it_ended(directory: str | os.PathLike[str], pid: int) -> str | None:
    """How the supervisor ``pid`` of the sandbox in ``directory`` ended
    (:func:`describe`), or None when nobody can tell."""
    path = os.path.join(directory, EXIT_FILE)
    # The file, then the zombie, then the file again: its parent writes the file
    # before it collects the zombie, so one of them is seen.
    record = read(path, pid) or from_zombie(pid) or read(path, pid)
    return describe(record) if record is not None else None
