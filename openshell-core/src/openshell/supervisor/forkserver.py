"""Supervisors forked from one warm parent: start time and memory per sandbox.

Starting Python and importing what a supervisor needs (gRPC, protobuf, asyncio,
cryptography, the policy engine, the isolation plugins) is most of a sandbox's
start (~0.2 s of CPU on an idle core) and most of its memory (~30 MiB of
interpreter heap per supervisor). The ``local`` driver therefore keeps one
*fork server*: ``python -m openshell.supervisor --fork-server`` does those
imports once at low priority, builds the policy engine's interpreter for the
default policy (``PolicyEngine.prepare``), moves everything it made into the garbage
collector's permanent generation (``gc.freeze``, so no collection in a child
writes to those pages) and then, for each line ``{"config": PATH, "log": PATH}``
(JSON) on its stdin, forks a child and answers the child's pid (decimal, one
line) on its stdout. The child waits until that answer is written (a server
stopped in between never leaves a second supervisor of one sandbox), then
starts a session of its own, points stdout/stderr at the log, runs at normal priority, and from then on is exactly
``python -m openshell.supervisor --config PATH``. Every supervisor shares the
imported modules' pages with the server and with each other until it writes to
them (copy on write), so a sandbox's proportional memory (PSS) is what its
supervisor made itself.

What a child carries over: the imports and the prepared policy interpreters, built
from the default policy, which is no secret (the server reads no config, holds
no secret, opens no socket and starts no thread; it is single-threaded when it
forks). ``random`` reseeds itself in every child (``os.register_at_fork``) and
the crypto backend (OpenSSL) detects the fork; tokens come from ``secrets``.
All supervisors share the server's address-space layout: none of them runs
code a sandbox controls, and a sandbox cannot read a supervisor's memory.

The server reaps its children (they are not the gateway's), and first writes
how each one ended (signal or exit code) to ``supervisor.exit`` beside its
config, for the sandbox's ERROR reason (``exit_status``). EOF on stdin (the
gateway stopped) or a malformed or over-long line ends it; children it forked
keep running (a gateway restart finds them by pid, as before).
"""

from __future__ import annotations

import gc
import json
import os
import re
import select
import signal
import sys
import tempfile
import traceback

from openshell.supervisor import exit_status

MAX_LINE = 8192  # bytes of one assignment line
SERVER_NICE = 10  # niceness of the server (a forked supervisor goes back to 0)


def _warm() -> None:
    """Import the supervisor, its start-up modules and the plugins it will load.

    Failures are ignored here: the real start loads the same things again and
    reports any error in the sandbox's log (fail closed there, not here).
    """
    engine_class = None
    try:
        # Imported here, not at module level: importing them is this function's job,
        # done after main() lowered the server's priority.
        from openshell.supervisor import launcher
        from openshell.supervisor.layers import REQUIRED_LAYERS
        from openshell.supervisor.main import _preload

        engine_class = _preload()
        # What a cold supervisor defers to first use (the YAML parser for policy
        # reloads, the HTTP inspector, the inference router, paramiko for SSH and
        # exec: ~6 MiB per supervisor after its first exec otherwise): imported once here, so
        # every forked supervisor shares those pages and none pays the import.
        import openshell.policy.yamlio  # noqa: F401
        import openshell.supervisor.inference  # noqa: F401
        import openshell.supervisor.proxy.l7  # noqa: F401
        import openshell.supervisor.ssh_channels  # noqa: F401 - paramiko, for the first exec or SSH session

        for name in REQUIRED_LAYERS:
            launcher.supervisor_layer_class(name)
        # The crypto backend's set-up (~4 ms on the first key) is paid here, not on
        # the way to READY; the key is dropped.
        from openshell.supervisor.sandbox_ca import SandboxCA

        SandboxCA.generate("fork-server")
        # The sandboxes' init as a compiled program (~4 MiB less per sandbox); built
        # once per source version, then only looked up. Until it exists, and where
        # it cannot be built, sandboxes get the Python init.
        from openshell.supervisor import native_init

        native_init.build()
    except Exception:  # noqa: BLE001 - see the docstring
        pass
    try:
        # The policy engine's first compilations (~10 ms and 4-6 MiB of native memory
        # each) are built here and kept: a child with the default policy's network
        # rules (none) takes the ready one, any other child an interpreter with the
        # modules already loaded. (Compiling one and dropping it saved ~0.25 MiB: its
        # freed heap is where children's later allocations land.) On its own: a
        # failure here must not skip the other warm-ups.
        from openshell.policy import default_policy

        if engine_class is not None:
            engine_class().prepare(default_policy())
    except Exception:  # noqa: BLE001 - see the docstring
        pass
    try:
        # The cgroup hierarchy, read from the mount table once (its cost grows with
        # the sandboxes running); a failure is the start's to report.
        from openshell.supervisor import cgroups

        cgroups.detect_once()
    except Exception:  # noqa: BLE001 - see the docstring
        pass


#: objects that fill the holes of the server's heap (see fill_free_blocks); kept alive
_FILLER: list[list[object]] = []
_POOL_ROW = re.compile(rb"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", re.M)


def free_blocks() -> list[tuple[int, int]]:
    """``(block size, free blocks)`` per size class of CPython's small-object
    allocator, over its partly used pools (``sys._debugmallocstats``, which writes
    to file descriptor 2: pointed at a temporary file meanwhile). Empty when this
    Python does not say (another implementation or output format)."""
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return []
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            debug()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    return [(int(size), int(free)) for size, free in _POOL_ROW.findall(text)]


def fill_free_blocks() -> int:
    """Fill the free blocks of the server's partly used memory pools with objects
    that are never freed; returns how many.

    The imports and the collection that precedes it leave holes all over the
    server's heap. CPython's allocator serves a new small object from a partly
    used pool first, so every forked supervisor would write its first thousands
    of objects into pages it shares with the server, one copied 4 KiB page per
    hole. Filled, the children's objects go to fresh pools of their own, packed:
    ~0.5 MiB of filler in the server (shared) saves ~0.9 MiB per supervisor
    (BENCHMARKS.md, "A compiled init").
    """
    # An object whose allocation is ``size`` bytes once rounded up to the 16-byte
    # class (64-bit CPython): object() is 16 bytes, a float 24, bytes 33 + its length.
    make = {16: lambda i: object(), 32: float}
    wanted = [(size, free) for size, free in free_blocks() if free and (size in make or size >= 48)]
    filler: list[object] = [None] * sum(free for _, free in wanted)  # sized first: no reallocation while filling
    i = 0
    for size, free in wanted:
        new = make.get(size, lambda _i, n=size - 33: bytes(n))
        for _ in range(free):
            filler[i] = new(i)
            i += 1
    _FILLER.append(filler)
    return i


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


def _reap(exit_files: dict[int, str] | None = None) -> None:
    """Collect every child that exited (supervisors are the server's children).

    :param exit_files: pid -> the ``supervisor.exit`` file of the supervisor that
        pid is: how it ended is written there before it is collected (the
        sandbox's ERROR reason names the signal or exit code; ``exit_status``).
    """
    files = exit_files if exit_files is not None else {}
    while exit_status.reap_any(lambda pid: files.pop(pid, None)) is not None:
        pass


def set_title(title: str) -> None:
    """Show ``title`` as this process's command line and name (``ps``, ``pgrep``).

    Overwrites the argv area in place as setproctitle(3) does (the kernel shows
    the title alone once the area's last byte is not NUL), cut to the area's
    size; the name (``comm``) keeps 15 bytes. Best effort: never raises.
    """
    import ctypes

    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        start, end = (int(v) for v in stat[stat.rindex(")") + 2 :].split()[45:47])
        size = end - start
        if size < 2:
            return
        raw = title.encode()[: size - 1] + b"\0"
        ctypes.memmove(start, raw.ljust(size, b"."), size)
        ctypes.CDLL(None).prctl(15, title.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, ValueError):
        pass


def _become_supervisor(config: str, logpath: str, wakeup: tuple[int, int], go: int) -> None:
    """In the forked child: become the supervisor of ``config``; never returns.

    First it waits for one byte on ``go``, which the server writes once the driver has
    the child's pid: a server stopped or killed before answering (the driver then gives
    up on it and starts the supervisor cold) must not leave a second supervisor of the
    same sandbox running. EOF (the server is gone) ends the child at once.
    """
    code = 1
    try:
        if os.read(go, 1) != b"1":
            os._exit(0)
        os.close(go)
        os.setsid()  # its own session and process group: the driver signals the group
        # Not the server's command line: an operator's `pkill -f -- --fork-server` must not hit sandboxes.
        set_title(f"openshell-supervisor {os.path.basename(os.path.dirname(config))}")
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wakeup:
            os.close(fd)
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)  # a supervisor runs at normal priority (root may lower nice)
        except OSError:
            pass
        fd = os.open(logpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the server's stdin pipe is not the supervisor's
        os.close(null)
        from openshell.supervisor.main import main as supervisor_main  # imported by _warm() already

        supervisor_main(["--config", config])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the sandbox's log, then exit
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
        os._exit(code)


def serve(stdin: int = 0, stdout: int = 1) -> int:
    """Fork one supervisor per assignment line read from ``stdin``; answer each pid on ``stdout``.

    :returns: 0 on EOF, 2 on a malformed or over-long line (both end the server).
    """
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    buf = b""
    exit_files: dict[int, str] = {}  # supervisors running, by pid: their supervisor.exit
    while True:
        _reap(exit_files)
        try:
            ready = select.select([stdin, wake_r], [], [])[0]
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        if stdin not in ready:
            continue
        data = os.read(stdin, MAX_LINE)
        if not data:
            return 0
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            job = _assignment(line + b"\n")
            if job is None:
                return 2
            go_r, go_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(go_w)
                _become_supervisor(*job, wakeup=(wake_r, wake_w), go=go_r)
            os.close(go_r)
            try:
                os.write(stdout, b"%d\n" % pid)  # the driver has the pid: only now may the child start
                os.write(go_w, b"1")
                exit_files[pid] = os.path.join(os.path.dirname(job[0]), exit_status.EXIT_FILE)
            finally:
                os.close(go_w)
        if len(buf) > MAX_LINE:
            return 2


def main() -> None:
    """Entry point for ``python -m openshell.supervisor --fork-server``; exits on EOF."""
    # Warm up at low priority: the server starts while a sandbox starts, and must
    # not slow it down on a busy machine. (A create that has to wait for the
    # warm-up raises it to normal priority; see the local driver.)
    os.nice(SERVER_NICE)
    _warm()
    gc.collect()
    try:
        fill_free_blocks()
    except Exception:  # noqa: BLE001 - memory only: the server serves without it
        pass
    gc.freeze()  # after the filling: its list is frozen too (no child's collection touches it)
    # The collector stays off here (``__main__`` turned it off; the serve loop makes
    # no cycles worth collecting): each child starts with it off too and turns it
    # on once READY (main.collector_on), like a supervisor started on its own.
    sys.exit(serve())
