"""A sandbox's own PID, IPC, UTS and cgroup namespaces, held by a per-sandbox init.

Without them every sandbox runs as the same uid in the host's PID and IPC
namespaces: one sandbox could ``prlimit``/``setpriority``/``kill -0`` the
processes of another and attach its SysV shared memory. Each sandbox therefore
gets, when its supervisor starts:

- an *init*: pid 1 of a new PID namespace (a small compiled program where this
  machine can build one, ``native_init``, else ``python -I -S`` with a few lines:
  it reaps orphans and exits when the supervisor goes away), created together with
  new IPC, UTS (hostname = the sandbox name) and cgroup namespaces;
- :meth:`SandboxNamespaces.entered`: the thread that starts a sandbox process
  (``launcher.spawn``) joins init's namespaces with one ``setns(pidfd)`` just
  for the fork, so the launcher and everything it starts are born inside them,
  and the entrypoint, every ``sandbox exec`` and SSH session share one PID
  namespace like the processes of a container.

Why the spawning thread and not the launcher: a PID namespace applies only to
children of the process that joins it. Doing it in the launcher would need a
fork there and a relay process per launch (signals, exit status, the tty's
session); in the spawning thread the launcher itself is the first process in
the namespace and still *becomes* the program (same pid, same exit status).
``setns`` for these four namespace types changes only the calling thread (like
``nsutil.in_netns``), and the thread goes back before it does anything else.

Lifetime: init holds the read end of a pipe whose write end only the
supervisor holds (close-on-exec). When the supervisor exits — cleanly or not —
init sees EOF and exits; the kernel then kills every process left in the PID
namespace, and the IPC namespace (with its shared memory and message queues)
is freed with its last process. :meth:`SandboxNamespaces.close` does the same
on purpose at shutdown.

The supervisor stays in the host PID namespace, so host ``/proc`` still shows
every sandbox process under its host pid (proxy identity, cleanup).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence

from openshell.supervisor import native_init, nsutil

log = logging.getLogger("openshell.supervisor")

#: the namespaces a sandbox gets (the network namespace comes from the netns layer)
NAMESPACES = nsutil.CLONE_NEWPID | nsutil.CLONE_NEWIPC | nsutil.CLONE_NEWUTS | nsutil.CLONE_NEWCGROUP
#: made by the supervisor's thread for init; init makes the cgroup namespace itself
_UNSHARED = nsutil.CLONE_NEWPID | nsutil.CLONE_NEWIPC | nsutil.CLONE_NEWUTS
#: seconds init may take to join the cgroup and say it is ready
INIT_READY_TIMEOUT = 10.0
#: ``/proc/thread-self/ns`` entries to come back to, with their ``setns`` types
_HOME = (
    ("pid_for_children", nsutil.CLONE_NEWPID),
    ("ipc", nsutil.CLONE_NEWIPC),
    ("uts", nsutil.CLONE_NEWUTS),
    ("cgroup", nsutil.CLONE_NEWCGROUP),
)
HOSTNAME_MAX = 64  # bytes (HOST_NAME_MAX)
_NOT_HOSTNAME = re.compile(r"[^A-Za-z0-9-]+")

# pid 1 of the sandbox: reap every child, exit on EOF of fd argv[1] (the supervisor is gone).
# native/openshell-init.c does the same steps in C (native_init); change both together.
# Signals from inside the namespace reach it only for signals it handles (SIGCHLD,
# which it ignores apart from waking up; SIGINT, which Python handles, goes back to
# the default), so a sandbox process cannot stop it.
#
# Before that it joins the sandbox's cgroup (argv[3:], cgroup.procs files) and only then
# makes the cgroup namespace, so the sandbox's cgroup is the root of what /proc/self/cgroup
# shows inside (and, on cgroup v2, the only subtree its processes may be moved within).
# One byte on fd argv[2] says it is ready; exiting without it means it failed.
#
# First it overwrites its argv in memory (as setproctitle does, the last byte of the area
# not NUL so the kernel shows the title alone; sys.argv keeps a copy) and its name:
# /proc/1/cmdline and comm, which every sandbox process reads, would otherwise name the
# host's python and the sandbox's host cgroup paths. No sandbox process exists before this.
#
# Last, it leaves the host's mount table: a mount namespace of its own whose root is an
# empty read-only tmpfs (pivot_root, old root detached). /proc/1/mountinfo is readable by
# every sandbox process and would otherwise list every host mount: other sandboxes' ids,
# workdirs and network namespaces. Init needs no file after this (its imports are done).
INIT_CODE = """\
import ctypes, os, select, signal, sys
keep, ready = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
with open("/proc/self/stat") as f:
    stat = f.read()
arg_start, arg_end = (int(v) for v in stat[stat.rindex(")") + 2 :].split()[45:47])
size = arg_end - arg_start
title = b"openshell-init"[: size - 1] + b"\\0"
ctypes.memmove(arg_start, title.ljust(size, b"."), size)
libc.prctl(15, b"openshell-init", 0, 0, 0)
for procs in sys.argv[3:]:
    with open(procs, "w") as f:
        f.write("0")
if libc.unshare(0x02000000) != 0:
    sys.exit(3)
pivot_root = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
if pivot_root is None or libc.unshare(0x00020000) != 0:
    sys.exit(4)
if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:
    sys.exit(5)
if libc.mount(b"openshell-init", b"/dev", b"tmpfs", 0x1 | 0x2 | 0x4 | 0x8, b"size=4k,mode=0555") != 0:
    sys.exit(6)
os.chdir("/dev")
if libc.syscall(pivot_root, b".", b".") != 0 or libc.umount2(b".", 2) != 0:
    sys.exit(7)
os.chdir("/")
os.write(ready, b"1")
os.close(ready)
r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGCHLD, lambda *_: None)
signal.signal(signal.SIGINT, signal.SIG_DFL)
while True:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    try:
        ready = select.select([keep, r], [], [])[0]
    except InterruptedError:
        continue
    if keep in ready:
        os._exit(0)
    try:
        os.read(r, 512)
    except BlockingIOError:
        pass
"""


class SandboxNamespacesError(Exception):
    """The sandbox's namespaces could not be made or entered (fail closed)."""


def hostname_for(name: str) -> str:
    """The sandbox's hostname: ``name`` with anything but letters, digits and ``-``
    turned into ``-``, cut to 64 bytes; ``sandbox`` when nothing is left."""
    host = _NOT_HOSTNAME.sub("-", name).strip("-")[:HOSTNAME_MAX].strip("-")
    return host or "sandbox"


@contextlib.contextmanager
def _thread_returns_home() -> Iterator[None]:
    """Run the block, then put the calling thread back into the PID (for children),
    IPC, UTS and cgroup namespaces it was in before.

    :raises SandboxNamespacesError: the way back failed. The thread would keep
        starting processes in the sandbox's namespaces, so this is fatal for the
        caller (the supervisor stops the sandbox).
    """
    home: list[tuple[int, int]] = []
    try:
        for entry, nstype in _HOME:
            home.append((os.open(f"/proc/thread-self/ns/{entry}", os.O_RDONLY | os.O_CLOEXEC), nstype))
        yield
    finally:
        failed: OSError | None = None
        for fd, nstype in home:
            try:
                nsutil.setns(fd, nstype)
            except OSError as exc:
                failed = failed or exc
            finally:
                os.close(fd)
        if failed is not None:
            raise SandboxNamespacesError(f"could not return to the supervisor's namespaces: {failed}")


class SandboxNamespaces:
    """One sandbox's init process and its namespaces (module docstring).

    Make one with :meth:`create` (or :meth:`start`, then :meth:`wait_ready`); :meth:`close` ends it (and every process in it).

    :ivar pid: init's pid in the host PID namespace.
    """

    def __init__(self, proc: subprocess.Popen, pidfd: int, keepalive: int) -> None:
        self._proc = proc
        self._pidfd = pidfd
        self._keepalive = keepalive  # write end of init's pipe; closing it ends init
        self._ready_r = -1  # read end of init's ready pipe until wait_ready() read it
        self._hostname = ""
        self._init = "python"  # or "native": which init runs (logged once ready)
        self.pid = proc.pid

    @classmethod
    def start(cls, hostname: str, cgroup_procs: Sequence[str] = (), init: str | None = None) -> SandboxNamespaces:
        """Start the sandbox's init in new PID, IPC, UTS and cgroup namespaces, without
        waiting for it to be ready (:meth:`wait_ready`; :meth:`entered` waits too).

        Its start (a Python init takes tens of ms) overlaps the rest of the sandbox's
        start instead of blocking it. Call from a thread that may block for a few
        milliseconds (the fork); the calling thread is back in its own namespaces
        when this returns.

        :param hostname: the sandbox's hostname (see :func:`hostname_for`).
        :param cgroup_procs: ``cgroup.procs`` files of the sandbox's cgroup: init joins
            them before it makes the cgroup namespace, whose root they become.
        :param init: ``"native"`` (``native_init.binary``; an error when it is not
            built), ``"python"`` (``INIT_CODE``), or None: native when built, else python.
        :raises SandboxNamespacesError: the kernel refused a namespace or init could not
            be started.
        """
        program = native_init.binary() if init in (None, "native") else None
        if init == "native" and program is None:
            raise SandboxNamespacesError("sandbox namespaces: the native init is not built (python -m openshell.supervisor.native_init)")
        read_fd, write_fd = os.pipe()  # both close-on-exec; init inherits only read_fd
        ready_r, ready_w = os.pipe()
        try:
            with _thread_returns_home():
                nsutil.unshare(_UNSHARED)
                socket.sethostname(hostname)
                argv = [program] if program else [sys.executable, "-I", "-S", "-c", INIT_CODE]
                proc = subprocess.Popen(
                    [*argv, str(read_fd), str(ready_w), *cgroup_procs],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    pass_fds=(read_fd, ready_w),
                    env={},
                    cwd="/",
                    start_new_session=True,  # a signal to the supervisor's group is not for init
                )
        except (OSError, SandboxNamespacesError) as exc:
            os.close(write_fd)
            os.close(ready_r)
            raise SandboxNamespacesError(f"sandbox namespaces: {exc}") from exc
        finally:
            os.close(read_fd)
            os.close(ready_w)
        try:
            pidfd = os.pidfd_open(proc.pid)  # a pid of ours (not reaped): cannot be reused
        except OSError as exc:
            os.close(write_fd)
            os.close(ready_r)
            proc.kill()
            proc.wait()
            raise SandboxNamespacesError(f"sandbox init: {exc}") from exc
        made = cls(proc, pidfd, write_fd)
        made._ready_r = ready_r
        made._hostname = hostname
        made._init = "native" if program else "python"
        return made

    @classmethod
    def create(cls, hostname: str, cgroup_procs: Sequence[str] = (), init: str | None = None) -> SandboxNamespaces:
        """:meth:`start`, then :meth:`wait_ready`. Same errors."""
        made = cls.start(hostname, cgroup_procs, init)
        made.wait_ready()
        return made

    def wait_ready(self, timeout: float = INIT_READY_TIMEOUT) -> None:
        """Block until init joined the cgroup and made its cgroup namespace. Idempotent.

        :param timeout: seconds.
        :raises SandboxNamespacesError: init failed or did not answer in time; it is
            ended (as by :meth:`close`).
        """
        if self._ready_r < 0:
            return
        try:
            ok = bool(select.select([self._ready_r], [], [], timeout)[0]) and os.read(self._ready_r, 1) == b"1"
        finally:
            os.close(self._ready_r)
            self._ready_r = -1
        if not ok:
            status = self._proc.poll()
            self.close()
            raise SandboxNamespacesError(
                f"sandbox init did not start (exit status {status}): could not join the cgroup, make its namespaces or leave the host's mount table"
            )
        log.info("event=sandbox_namespaces pid=%d hostname=%s init=%s", self.pid, self._hostname, self._init)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread in the sandbox's namespaces: processes
        it starts are born in them. Do not await inside (one thread from start to end).

        :raises SandboxNamespacesError: init is gone (the sandbox is stopping) or the
            thread could not go back (see ``_thread_returns_home``).
        """
        if self._pidfd < 0:
            raise SandboxNamespacesError("sandbox namespaces are closed (the sandbox is stopping)")
        self.wait_ready()  # a process born before init made the cgroup namespace would not be in it
        with _thread_returns_home():
            try:
                nsutil.setns(self._pidfd, NAMESPACES)
            except OSError as exc:
                raise SandboxNamespacesError(f"sandbox namespaces are gone (init pid {self.pid}): {exc}") from exc
            yield

    def alive(self) -> bool:
        """True while init runs."""
        return self._proc.poll() is None

    def close(self, timeout: float = 2.0) -> None:
        """End init, and with it every process in the sandbox's PID namespace; the IPC
        namespace goes with its last process. Idempotent.

        The kernel SIGKILLs every process in the namespace at once, but init's exit
        completes only when they are all reaped, and those started by ``entered``
        are the caller's children: reap them (``Popen.poll``) before, or init
        stays until the caller does. ``timeout`` (seconds) bounds the wait here.
        """
        if self._keepalive >= 0:
            os.close(self._keepalive)
            self._keepalive = -1
        if self._ready_r >= 0:
            os.close(self._ready_r)
            self._ready_r = -1
        if self._proc.poll() is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("event=sandbox_init_waiting pid=%d reason=children of the supervisor not reaped yet", self.pid)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
