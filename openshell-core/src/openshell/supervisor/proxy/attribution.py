"""Who called ``connect()``: identity snapshotted by the kernel at connect time.

The sandbox's seccomp filter answers ``connect``, ``execve`` and ``execveat``
with a user notification (``SECCOMP_RET_USER_NOTIF``). The launcher hands the
filter's listener fd to the supervisor over a private socket pair
(``SCM_RIGHTS``) before it execs the program, and :class:`ConnectAttributor`
serves the listeners from one thread:

- ``connect(fd, …)``: the caller's socket inode (``/proc/<pid>/fd/<fd>``), its
  executable, whether its executable mappings include a file the sandbox can
  write (:func:`tainted_mapping`), and its ancestors as they were when each
  descendant was created (:func:`ancestor_chain`) are recorded under the socket
  inode, the notification id is checked to be still valid (the pid was not
  reused while we read ``/proc``), and the call continues
  (``SECCOMP_USER_NOTIF_FLAG_CONTINUE``). The record exists before the SYN is
  sent, so before the proxy accepts the connection;
- ``execve``/``execveat``: the caller's pid (and start time) is recorded with
  the time of the exec and the children it had then, so a process that execs an
  allowed binary *after* a descendant was created does not vouch for it.

The proxy maps an accepted connection to the client socket inode (``sockdiag``)
and takes the record (:meth:`ConnectAttributor.take`). Passing the socket to
another process or exec'ing after ``connect`` does not change it. No record
(attribution failed, the listener died, a race) denies: ``IdentityError``.

Known limits: ``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` re-reads the syscall's
arguments after the supervisor answered, so a thread of the *same* process can
swap which socket the fd number names in between; the identity recorded is
still that process's. Two filters' user notifications cannot stack, so the
sandbox's filter refuses ``SECCOMP_FILTER_FLAG_NEW_LISTENER`` to its programs.
An ancestor's mappings are read once per program it runs (cost: a ``maps`` read
per ancestor per connect otherwise), so a library an ancestor loads later is
not seen; the connecting process's own mappings are read at every connect.
"""

from __future__ import annotations

import array
import ctypes
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from openshell.supervisor.proxy.identity import IdentityError, ProcessIdentity

log = logging.getLogger("openshell.supervisor.attribution")

# <linux/seccomp.h>: struct seccomp_notif is 80 bytes, seccomp_notif_resp 24.
_NOTIF = struct.Struct("=QII iI Q 6Q")
_RESP = struct.Struct("=QqiI")
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1

MAX_RECORDS = 4096  # connect records kept (LRU): connects that never reach the proxy age out
MAX_EXECS = 8192  # exec records kept (LRU)
MAX_CLEAN = 65536  # mapped files remembered as clean
_DELETED = " (deleted)"
_CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Directories a sandbox can always write (the rest come from the policy).
DEFAULT_WRITABLE: tuple[str, ...] = ("/sandbox", "/tmp", "/var/tmp", "/dev/shm", "/run/user")

_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- pure checks


def tainted_mapping(maps_text: str, writable: Iterable[str], sandbox_uid: int = -1, stat=os.stat, clean: set[tuple[str, str]] | None = None) -> str | None:
    """The first executable mapping of a process that the sandbox could have written, or None.

    :param maps_text: ``/proc/<pid>/maps``.
    :param writable: directories the sandbox can write besides ``DEFAULT_WRITABLE``;
        a file under one is tainted.
    :param sandbox_uid: a mapped file owned by this uid is tainted (-1: not checked).
    :param stat: ``os.stat`` (tests pass a fake); a file that cannot be stat'ed is tainted.
    :param clean: ``{(device, inode)}`` of mapped files found clean before (read and
        extended). Sound to remember: the sandbox cannot chown or chmod a file it
        does not own, and a replaced file is a new inode.
    :returns: the tainted path (``memfd:…``, ``… (deleted)``, a writable file).
    """
    writable = [p.rstrip("/") for p in (*DEFAULT_WRITABLE, *writable) if p.rstrip("/")]
    prefixes = tuple(p + "/" for p in writable)
    seen: set[str] = set()
    for line in maps_text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "x" not in parts[1]:
            continue  # not executable, or anonymous (JIT code is the program's own)
        path = parts[5]
        if path in seen:
            continue
        seen.add(path)
        key = (parts[3], parts[4])  # device and inode of the mapped file, from the kernel
        if clean is not None and key in clean:
            continue
        if path.startswith("["):  # [vdso], [vsyscall]: the kernel's
            continue
        if path.startswith("/memfd:") or path.endswith(_DELETED) or not path.startswith("/"):
            return path
        if path.startswith(prefixes) or path in writable:
            return path
        try:
            st = stat(path)
        except OSError:
            return path
        if (sandbox_uid >= 0 and st.st_uid == sandbox_uid) or st.st_mode & 0o002:
            return path
        if clean is not None and len(clean) < MAX_CLEAN:
            clean.add(key)
    return None


@dataclass(frozen=True)
class ExecRecord:
    """An ``execve`` by a sandbox process.

    :ivar ticks: ``CLOCK_BOOTTIME`` of the exec, in clock ticks (``/proc`` start-time unit).
    :ivar children: pids of its children at that moment (created under the old program).
    """

    ticks: float
    children: frozenset[int]


@dataclass(frozen=True)
class Proc:
    """One process on an ancestor chain: ``pid``, ``start`` (ticks), canonical ``exe``, ``tainted`` path or None."""

    pid: int
    start: int
    exe: str
    tainted: str | None = None


def ancestor_chain(child: Proc, parents: list[Proc], execs: dict[tuple[int, int], ExecRecord]) -> tuple[str, ...]:
    """The ancestors' executables that vouch for ``child``, nearest first.

    An ancestor counts only with the program it ran when the process below it on
    the chain was created: one that exec'd since (it had that process as a child
    at its exec, or its exec is clearly later than that process's start) is left
    out, and so is one with a tainted mapping. The walk goes on past it, since
    *its* ancestors still created it.

    :param parents: ``child``'s ancestors, nearest first.
    :param execs: ``{(pid, start ticks): last exec}``.
    """
    out: list[str] = []
    below = child
    for proc in parents:
        rec = execs.get((proc.pid, proc.start))
        # Start times are whole ticks (truncated); an exec more than one tick after
        # the start of the process below is after it, whatever the rounding.
        later = rec is not None and (below.pid in rec.children or rec.ticks > below.start + 1)
        if not later and proc.tainted is None:
            out.append(proc.exe)
        below = proc
    return tuple(out)


# --------------------------------------------------------------------------- /proc readers


def _stat_fields(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _children(pid: int) -> frozenset[int]:
    kids: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return frozenset()
    for tid in tids:
        try:
            kids.update(int(k) for k in _read(f"/proc/{pid}/task/{tid}/children").split())
        except OSError:
            continue
    return frozenset(kids)


def _tgid(tid: int) -> int:
    """The process (thread group) of thread ``tid``: notifications name the calling thread.

    :raises OSError: the thread is gone.
    """
    if int(_stat_fields(tid)[17]) == 1:  # num_threads: a single-threaded process is its own group
        return tid
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    raise OSError(errno.ESRCH, f"no Tgid for {tid}")


def _exe(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe").removesuffix(_DELETED)


# --------------------------------------------------------------------------- the server


class ConnectAttributor:
    """Serves the sandbox's seccomp listeners and keeps connect records (thread-safe).

    :param writable: directories the sandbox can write (taint check).
    :param sandbox_uid: the sandbox user's uid (a mapped file it owns is tainted).
    :param stop_at: pids where the ancestor walk stops (exclusive): the supervisor.
    """

    def __init__(self, writable: Collection[str] = DEFAULT_WRITABLE, sandbox_uid: int = -1, stop_at: Collection[int] = ()) -> None:
        self.writable = tuple(dict.fromkeys([*DEFAULT_WRITABLE, *writable]))
        self.sandbox_uid = sandbox_uid
        self._stop = frozenset(stop_at) | {0, 1, os.getpid()}
        self._clean: set[tuple[str, str]] = set()  # serving thread only
        # ancestors' snapshots by (pid, start), with the exec record they were taken under
        self._ancestors: OrderedDict[tuple[int, int], tuple[Proc, ExecRecord | None]] = OrderedDict()  # serving thread only
        self._lock = threading.Lock()
        self._records: OrderedDict[int, ProcessIdentity] = OrderedDict()
        self._execs: OrderedDict[tuple[int, int], ExecRecord] = OrderedDict()
        self._poll = select.epoll()
        self._fds: dict[int, str] = {}  # fd -> "chan" (socket pair end) or "listener"
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.EPOLLIN)
        self._closed = False
        self.failed: str | None = None  # set when the serving thread died: every lookup then denies
        self._thread = threading.Thread(target=self._serve, name="seccomp-notify", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- wiring
    def channel(self) -> socket.socket:
        """A new socket pair; returns the launcher's end (pass it as ``LaunchSpec.notify_fd``).

        The supervisor's end is served here: the launcher sends its listener fd on it.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = ours.detach()
        with self._lock:
            self._fds[fd] = "chan"
            self._poll.register(fd, select.EPOLLIN)
        return theirs

    def close(self) -> None:
        """Stop serving and close every listener (pending calls then fail with ENOSYS). Idempotent."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in list(self._fds):
            os.close(fd)
        self._fds.clear()
        self._poll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---------------------------------------------------------------- proxy side
    def take(self, inode: int) -> ProcessIdentity:
        """The identity recorded when the socket ``inode`` was connected.

        :raises IdentityError: no record (not connected through the filter, the
            listener died, or the record aged out): deny.
        """
        if self.failed is not None:
            raise IdentityError(f"connect attribution stopped: {self.failed}")
        with self._lock:
            ident = self._records.get(inode)
        if ident is None:
            raise IdentityError(f"no connect() record for socket inode {inode}")
        return ident

    # ---------------------------------------------------------------- serving thread
    def _serve(self) -> None:
        try:
            while not self._closed:
                for fd, events in self._poll.poll():
                    if fd == self._wake_r:
                        return
                    kind = self._fds.get(fd)
                    if kind == "chan":
                        self._receive_listener(fd)
                    elif kind == "listener":
                        if events & (select.EPOLLHUP | select.EPOLLERR) and not events & select.EPOLLIN:
                            self._drop(fd)  # every process under this filter is gone
                        else:
                            self._handle(fd)
        except Exception as exc:  # noqa: BLE001 - fail closed: no record, no connection
            self.failed = repr(exc)
            log.error("event=attribution_failed reason=%r", exc)
            # Closing the listeners makes the sandbox's pending and later connect/exec
            # calls fail (ENOSYS) instead of waiting for an answer that never comes.
            for fd in [fd for fd, kind in self._fds.items() if kind == "listener"]:
                self._drop(fd)

    def _drop(self, fd: int) -> None:
        self._fds.pop(fd, None)
        try:
            self._poll.unregister(fd)
        except OSError:
            pass
        os.close(fd)

    def _receive_listener(self, chan: int) -> None:
        sock = socket.socket(fileno=os.dup(chan))
        try:
            fds = array.array("i")
            msg, anc, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        finally:
            sock.close()
        self._drop(chan)  # one listener per launcher
        for fd in fds:
            os.set_blocking(fd, False)
            self._fds[fd] = "listener"
            self._poll.register(fd, select.EPOLLIN)

    def _handle(self, fd: int) -> None:
        buf = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EAGAIN, errno.EINTR):
                return  # the caller was interrupted, or another reader took it
            raise
        nid, pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buf)
        try:
            if nr == _NR_CONNECT:
                self._on_connect(fd, nid, pid, int(args[0]) & 0xFFFFFFFF)
            else:
                self._on_exec(fd, nid, pid)
        except Exception as exc:  # noqa: BLE001 - this call gets no record (the proxy then denies)
            log.warning("event=attribution_record_failed pid=%d reason=%r", pid, exc)
        self._respond(fd, nid)

    @staticmethod
    def _respond(fd: int, nid: int) -> None:
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, bytearray(_RESP.pack(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)))
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the caller was killed meanwhile
                raise

    @staticmethod
    def _valid(fd: int, nid: int) -> bool:
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, bytearray(struct.pack("=Q", nid)))
        except OSError:
            return False
        return True

    def _proc(self, pid: int) -> tuple[Proc, int]:
        """``(snapshot, ppid)`` of process ``pid`` (one ``stat`` read).

        :raises OSError: the process vanished.
        """
        fields = _stat_fields(pid)
        exe = _exe(pid)
        maps = _read(f"/proc/{pid}/maps")
        return Proc(pid, int(fields[19]), exe, tainted_mapping(maps, self.writable, self.sandbox_uid, clean=self._clean)), int(fields[1])

    def _ancestor(self, pid: int, execs: dict[tuple[int, int], ExecRecord]) -> tuple[Proc, int]:
        """``_proc`` for an ancestor, with its maps verdict remembered while it runs the same program.

        The remembered snapshot is used only if the process's executable and last
        exec record are unchanged and that exec is over a second old (so the
        snapshot was not taken between an exec's notification and the exec itself).
        The ``ppid`` is always read afresh (orphans are reparented).
        """
        fields = _stat_fields(pid)
        key = (pid, int(fields[19]))
        rec = execs.get(key)
        cached = self._ancestors.get(key)
        if cached is not None and cached[1] is rec and _exe(pid) == cached[0].exe:
            return cached[0], int(fields[1])
        proc, ppid = self._proc(pid)
        fresh = rec is not None and time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK - rec.ticks < _CLK_TCK
        if not fresh and proc.start == key[1]:
            self._ancestors[key] = (proc, rec)
            while len(self._ancestors) > MAX_EXECS:
                self._ancestors.popitem(last=False)
        return proc, ppid

    def identify(self, pid: int) -> ProcessIdentity:
        """Snapshot of ``pid`` now: its binary (a marker if a mapping is tainted) and ancestors.

        :param pid: a thread id (notifications name the calling thread).
        :raises OSError: the process vanished.
        """
        me, current = self._proc(_tgid(pid))
        with self._lock:
            execs = dict(self._execs)
        parents: list[Proc] = []
        seen = {me.pid}
        while current not in self._stop and current not in seen and len(parents) < 64:
            try:
                proc, nxt = self._ancestor(current, execs)
            except OSError:
                break  # exited: its orphans were reparented, the chain ends here
            parents.append(proc)
            seen.add(current)
            current = nxt
        binary = me.exe if me.tainted is None else f"untrusted:{me.exe} (maps {me.tainted})"
        return ProcessIdentity(binary, ancestor_chain(me, parents, execs), (me.pid,))

    def _on_connect(self, fd: int, nid: int, pid: int, sockfd: int) -> None:
        link = os.readlink(f"/proc/{pid}/fd/{sockfd}")
        if not link.startswith("socket:["):
            return  # connect on a non-socket fails with ENOTSOCK
        inode = int(link[8:-1])
        ident = self.identify(pid)
        if not self._valid(fd, nid):
            return  # the caller died while we read /proc: the pid may name another process
        with self._lock:
            self._records[inode] = ident
            self._records.move_to_end(inode)
            while len(self._records) > MAX_RECORDS:
                self._records.popitem(last=False)

    def _on_exec(self, fd: int, nid: int, pid: int) -> None:
        pid = _tgid(pid)
        start = int(_stat_fields(pid)[19])
        rec = ExecRecord(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK, _children(pid))
        if not self._valid(fd, nid):
            return
        with self._lock:
            self._execs[(pid, start)] = rec
            self._execs.move_to_end((pid, start))
            while len(self._execs) > MAX_EXECS:
                self._execs.popitem(last=False)


def _syscall_nr(name: str) -> int:
    import pyseccomp

    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


_NR_CONNECT = _syscall_nr("connect")

__all__ = ["ConnectAttributor", "ExecRecord", "Proc", "ancestor_chain", "tainted_mapping"]
