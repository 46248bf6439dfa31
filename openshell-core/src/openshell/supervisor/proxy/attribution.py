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
import logging
import os
import re
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

MAX_PROC_READ = 16 << 20  # bytes of one /proc file (maps of a process with very many mappings); more denies

# --------------------------------------------------------------------------- GIL-holding system calls
#
# The serving thread shares the GIL with the proxy's event loop. Every system
# call made through ``os``/``open``/``fcntl`` releases the GIL and must get it
# back afterwards; while the loop thread is busy (100 connections at once), each
# re-acquisition waits up to the interpreter's switch interval (5 ms) and for a
# free core. A notification used ~15 such calls (stat, status, exe, maps, the fd
# link, two ioctls), so the connecting process waited ~15 GIL hand-offs before
# its SYN left. The calls below go through ``ctypes.PyDLL``, which keeps the GIL:
# they are short ``/proc`` reads and seccomp ioctls that never wait (for ``RECV``
# see ``ConnectAttributor._handle``), so a burst of notifications costs one
# hand-off, when the thread wakes from its epoll wait.

_libc = ctypes.PyDLL(None, use_errno=True)
_c_open = _libc.open
_c_open.argtypes, _c_open.restype = (ctypes.c_char_p, ctypes.c_int), ctypes.c_int
_c_read = _libc.read
_c_read.argtypes, _c_read.restype = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t), ctypes.c_ssize_t
_c_close = _libc.close
_c_close.argtypes, _c_close.restype = (ctypes.c_int,), ctypes.c_int
_c_readlink = _libc.readlink
_c_readlink.argtypes, _c_readlink.restype = (ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t), ctypes.c_ssize_t
_c_ioctl = _libc.ioctl
_c_ioctl.argtypes, _c_ioctl.restype = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p), ctypes.c_int


class _PollFd(ctypes.Structure):
    _fields_ = (("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short))


_c_poll = _libc.poll
_c_poll.argtypes, _c_poll.restype = (ctypes.POINTER(_PollFd), ctypes.c_ulong, ctypes.c_int), ctypes.c_int
_POLLIN = 0x1


def _readable(fd: int) -> bool:
    """True if ``fd`` is readable now (``poll`` with no wait, GIL held)."""
    pfd = _PollFd(fd, _POLLIN, 0)
    return _c_poll(ctypes.byref(pfd), 1, 0) == 1 and bool(pfd.revents & _POLLIN)


_O_RDONLY_CLOEXEC = os.O_RDONLY | os.O_CLOEXEC
_BUF_SIZE = 1 << 16
_bufs = threading.local()


def _buf() -> ctypes.Array:
    buf = getattr(_bufs, "buf", None)
    if buf is None:
        buf = _bufs.buf = ctypes.create_string_buffer(_BUF_SIZE)
    return buf


def _oserror(what: bytes) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), os.fsdecode(what))


def _read_bytes(path: bytes, limit: int = MAX_PROC_READ) -> bytes:
    """The whole file ``path`` (a ``/proc`` file), read with the GIL held.

    :raises OSError: it cannot be opened or read, or it is longer than ``limit``.
    """
    fd = _c_open(path, _O_RDONLY_CLOEXEC)
    if fd < 0:
        raise _oserror(path)
    try:
        buf = _buf()
        chunks: list[bytes] = []
        total = 0
        while True:
            n = _c_read(fd, buf, _BUF_SIZE)
            if n < 0:
                raise _oserror(path)
            if n == 0:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            total += n
            if total > limit:
                raise OSError(errno.EFBIG, f"more than {limit} bytes", os.fsdecode(path))
            chunks.append(ctypes.string_at(buf, n))
    finally:
        _c_close(fd)


def _readlink(path: bytes) -> str:
    """``readlink(path)`` with the GIL held. :raises OSError:."""
    buf = _buf()
    n = _c_readlink(path, buf, _BUF_SIZE)
    if n < 0:
        raise _oserror(path)
    if n >= _BUF_SIZE:
        raise OSError(errno.ENAMETOOLONG, "link target too long", os.fsdecode(path))
    return os.fsdecode(ctypes.string_at(buf, n))


def _ioctl(fd: int, request: int, arg: ctypes.Array) -> None:
    """``ioctl(fd, request, arg)`` with the GIL held (never one that waits). :raises OSError:."""
    if _c_ioctl(fd, request, arg) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# --------------------------------------------------------------------------- pure checks


# An executable, file-backed mapping in /proc/<pid>/maps: the permissions' "x" and
# private/shared flag, the offset, then the device, the inode and the path (which
# may contain spaces). Searched for without anchoring the line (4x faster than
# matching every line from its start): the address range before the permissions
# is hex (no "x"), so every executable line matches from its permissions; text in
# a *path* that happens to look like this adds a spurious entry, which can only
# taint, never hide a real mapping (matches end at the end of their line).
# Anonymous executable mappings (JIT code, the program's own) have no path and do
# not match.
_EXEC_LINE = re.compile(rb"x[ps] [0-9a-f]+ (\S+) (\d+) +(\S[^\n]*)")


Mapping = tuple[tuple, str]  # ((device, inode) as the source spells it, path)


def _text_mappings(maps: bytes) -> list[Mapping]:
    """The executable, file-backed mappings listed in ``/proc/<pid>/maps`` text."""
    return [((dev, ino), os.fsdecode(path)) for dev, ino, path in _EXEC_LINE.findall(maps)]


def tainted_mapping(maps_text: str | bytes, writable: Iterable[str], sandbox_uid: int = -1, stat=os.stat, clean: set[tuple] | None = None) -> str | None:
    """The first executable mapping of a process that the sandbox could have written, or None.

    :param maps_text: ``/proc/<pid>/maps`` (text or the raw bytes).
    :param writable: directories the sandbox can write besides ``DEFAULT_WRITABLE``;
        a file under one is tainted.
    :param sandbox_uid: a mapped file owned by this uid is tainted (-1: not checked).
    :param stat: ``os.stat`` (tests pass a fake); a file that cannot be stat'ed is tainted.
    :param clean: ``{(device, inode)}`` of mapped files found clean before (read and
        extended). Sound to remember: the sandbox cannot chown or chmod a file it
        does not own, and a replaced file is a new inode.
    :returns: the tainted path (``memfd:…``, ``… (deleted)``, a writable file).
    """
    raw = maps_text if isinstance(maps_text, bytes) else os.fsencode(maps_text)
    return tainted_of(_text_mappings(raw), writable, sandbox_uid, stat, clean)


def tainted_of(mappings: Iterable[Mapping], writable: Iterable[str], sandbox_uid: int = -1, stat=os.stat, clean: set[tuple] | None = None) -> str | None:
    """``tainted_mapping`` for mappings already listed as ``((device, inode), path)``."""
    writable = [p.rstrip("/") for p in (*DEFAULT_WRITABLE, *writable) if p.rstrip("/")]
    prefixes = tuple(p + "/" for p in writable)
    seen: set[str] = set()
    for key, path in mappings:
        if path in seen:
            continue
        seen.add(path)
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


# PROCMAP_QUERY (Linux 6.11+, <linux/fs.h>): an ioctl on an open /proc/<pid>/maps
# that returns the next VMA matching filters, with its backing file's device,
# inode and path. Asking only for executable, file-backed VMAs skips the text
# of every other mapping (a 100-thread client has ~300 lines, ~12 of them
# executable): 67 -> ~25 us per connect here. Older kernels answer ENOTTY and
# the text is read instead.
class _ProcmapQuery(ctypes.Structure):
    _fields_ = (
        ("size", ctypes.c_uint64),
        ("query_flags", ctypes.c_uint64),
        ("query_addr", ctypes.c_uint64),
        ("vma_start", ctypes.c_uint64),
        ("vma_end", ctypes.c_uint64),
        ("vma_flags", ctypes.c_uint64),
        ("vma_page_size", ctypes.c_uint64),
        ("vma_offset", ctypes.c_uint64),
        ("inode", ctypes.c_uint64),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("vma_name_size", ctypes.c_uint32),
        ("build_id_size", ctypes.c_uint32),
        ("vma_name_addr", ctypes.c_uint64),
        ("build_id_addr", ctypes.c_uint64),
    )


PROCMAP_QUERY = 0xC0000000 | (ctypes.sizeof(_ProcmapQuery) << 16) | (ord("f") << 8) | 17  # _IOWR('f', 17, struct procmap_query)
_QUERY_EXEC_FILES = 0x04 | 0x10 | 0x20  # VMA_EXECUTABLE | COVERING_OR_NEXT_VMA | FILE_BACKED_VMA
_MAX_VMAS = 1 << 16  # executable file mappings of one process; more denies
_procmap_query = [True]  # False once the kernel said it has no PROCMAP_QUERY


def _query_mappings(pid: int) -> list[Mapping] | None:
    """Executable, file-backed mappings of ``pid`` through PROCMAP_QUERY (GIL held), or
    None when this kernel lacks the ioctl. :raises OSError: the process is gone, a path
    is longer than the buffer, or too many mappings."""
    path = b"/proc/%d/maps" % pid
    fd = _c_open(path, _O_RDONLY_CLOEXEC)
    if fd < 0:
        raise _oserror(path)
    try:
        buf = _buf()
        q = _ProcmapQuery()
        out: list[Mapping] = []
        addr = 0
        while len(out) < _MAX_VMAS:
            q.size, q.query_flags, q.query_addr = ctypes.sizeof(q), _QUERY_EXEC_FILES, addr
            q.vma_name_size, q.vma_name_addr = _BUF_SIZE, ctypes.addressof(buf)
            if _c_ioctl(fd, PROCMAP_QUERY, ctypes.addressof(q)) < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    return out  # no further VMA
                if err in (errno.ENOTTY, errno.EINVAL) and not out:
                    return None
                raise OSError(err, os.strerror(err), os.fsdecode(path))
            name = os.fsdecode(ctypes.string_at(buf, max(q.vma_name_size - 1, 0))) if q.vma_name_size else ""
            out.append(((q.dev_major, q.dev_minor, q.inode), name))
            addr = q.vma_end
        raise OSError(errno.E2BIG, f"more than {_MAX_VMAS} executable mappings", os.fsdecode(path))
    finally:
        _c_close(fd)


def _exec_mappings(pid: int) -> list[Mapping]:
    """Executable, file-backed mappings of process ``pid`` (PROCMAP_QUERY, else the maps text)."""
    if _procmap_query[0]:
        found = _query_mappings(pid)
        if found is not None:
            return found
        _procmap_query[0] = False
    return _text_mappings(_read_bytes(b"/proc/%d/maps" % pid))


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
# (all with the GIL held, see above)


def _stat_fields(pid: int) -> list[bytes]:
    """``/proc/<pid>/stat`` after the command name: index 0 is the state, 1 the ppid,
    17 ``num_threads``, 19 ``starttime``. :raises OSError: the process is gone."""
    stat = _read_bytes(b"/proc/%d/stat" % pid)
    # comm may contain spaces and ')': the fields after the last ')' are fixed.
    return stat[stat.rindex(b")") + 2 :].split()


def _children(pid: int) -> frozenset[int]:
    kids: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return frozenset()
    for tid in tids:
        try:
            kids.update(int(k) for k in _read_bytes(b"/proc/%d/task/%s/children" % (pid, os.fsencode(tid))).split())
        except OSError:
            continue
    return frozenset(kids)


def _tgid(tid: int, fields: list[bytes] | None = None) -> int:
    """The process (thread group) of thread ``tid``: notifications name the calling thread.

    :param fields: ``_stat_fields(tid)`` when the caller has them.
    :raises OSError: the thread is gone.
    """
    if int((fields or _stat_fields(tid))[17]) == 1:  # num_threads: a single-threaded process is its own group
        return tid
    for line in _read_bytes(b"/proc/%d/status" % tid).splitlines():
        if line.startswith(b"Tgid:"):
            return int(line.split()[1])
    raise OSError(errno.ESRCH, f"no Tgid for {tid}")


def _exe(pid: int) -> str:
    return _readlink(b"/proc/%d/exe" % pid).removesuffix(_DELETED)


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
        # Resolved here, not at import: pyseccomp comes with the seccomp plugin, and
        # importing this module (with the proxy package) must not need it.
        self._nr_connect = _syscall_nr("connect")
        self._stop = frozenset(stop_at) | {0, 1, os.getpid()}
        self._clean: set[tuple] = set()  # serving thread only
        # ancestors' snapshots by (pid, start), with the exec record they were taken under
        self._ancestors: OrderedDict[tuple[int, int], tuple[Proc, ExecRecord | None]] = OrderedDict()  # serving thread only
        self._groups: dict[tuple[int, int], int] = {}  # (tid, thread start) -> its process; serving thread only
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
            events: list[tuple[int, int]] = []
            while not self._closed:
                if not events:
                    events = self._poll.poll()  # idle: waits with the GIL released
                for fd, mask in events:
                    if fd == self._wake_r:
                        return
                    kind = self._fds.get(fd)
                    if kind == "chan":
                        self._receive_listener(fd)
                    elif kind == "listener":
                        if mask & select.EPOLLIN:
                            self._handle(fd)
                        elif mask & (select.EPOLLHUP | select.EPOLLERR):
                            self._drop(fd)  # every process under this filter is gone
                # Notifications that arrived meanwhile are served before waiting again,
                # without giving up the GIL to ask (one hand-off per notification).
                events = self._ready_now()
        except Exception as exc:  # noqa: BLE001 - fail closed: no record, no connection
            self.failed = repr(exc)
            log.error("event=attribution_failed reason=%r", exc)
            # Closing the listeners makes the sandbox's pending and later connect/exec
            # calls fail (ENOSYS) instead of waiting for an answer that never comes.
            for fd in [fd for fd, kind in self._fds.items() if kind == "listener"]:
                self._drop(fd)

    def _ready_now(self) -> list[tuple[int, int]]:
        """``[(fd, events)]`` of the served fds that are ready now (``poll`` with no wait,
        the GIL held); the masks use the epoll bits (equal to poll's on Linux)."""
        fds = (self._wake_r, *self._fds)  # one C-level copy: channel() may add fds meanwhile
        arr = (_PollFd * len(fds))(*[_PollFd(fd, _POLLIN, 0) for fd in fds])
        if _c_poll(arr, len(fds), 0) <= 0:
            return []  # nothing ready (or EINTR: the epoll wait will see it)
        return [(p.fd, p.revents) for p in arr if p.revents]

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
        """Serve one notification of listener ``fd``, which (e)poll reported readable.

        ``RECV`` runs with the GIL held too, which is safe only because it cannot
        wait here: the kernel counts notifications added and taken (``requests``),
        ``RECV`` waits only while that count is zero, and only this thread takes
        any. Readable means a notification not yet taken is listed, so the count is
        at least one; a caller interrupted meanwhile leaves the count as it was and
        ``RECV`` then fails with ENOENT at once. Readiness is checked again right
        here, so the argument does not depend on how old the caller's event is.
        """
        if not _readable(fd):
            return
        buf = ctypes.create_string_buffer(_NOTIF.size)  # zeroed, as the kernel requires
        try:
            _ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EAGAIN, errno.EINTR):
                return  # the caller was interrupted, or another reader took it
            raise
        nid, pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buf.raw)
        try:
            if nr == self._nr_connect:
                self._on_connect(fd, nid, pid, int(args[0]) & 0xFFFFFFFF)
            else:
                self._on_exec(fd, nid, pid)
        except Exception as exc:  # noqa: BLE001 - this call gets no record (the proxy then denies)
            log.warning("event=attribution_record_failed pid=%d reason=%r", pid, exc)
        self._respond(fd, nid)

    @staticmethod
    def _respond(fd: int, nid: int) -> None:
        try:
            _ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, ctypes.create_string_buffer(_RESP.pack(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE), _RESP.size))
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the caller was killed meanwhile
                raise

    @staticmethod
    def _valid(fd: int, nid: int) -> bool:
        try:
            _ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, ctypes.create_string_buffer(struct.pack("=Q", nid), 8))
        except OSError:
            return False
        return True

    def _proc(self, pid: int, fields: list[bytes] | None = None) -> tuple[Proc, int]:
        """``(snapshot, ppid)`` of process ``pid``: executable, start time, maps verdict.

        :param fields: ``_stat_fields(pid)`` when the caller has them.
        :raises OSError: the process vanished.
        """
        fields = fields or _stat_fields(pid)
        exe = _exe(pid)
        tainted = tainted_of(_exec_mappings(pid), self.writable, self.sandbox_uid, clean=self._clean)
        return Proc(pid, int(fields[19]), exe, tainted), int(fields[1])

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
        proc, ppid = self._proc(pid, fields)
        fresh = rec is not None and time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK - rec.ticks < _CLK_TCK
        if not fresh and proc.start == key[1]:
            self._ancestors[key] = (proc, rec)
            while len(self._ancestors) > MAX_EXECS:
                self._ancestors.popitem(last=False)
        return proc, ppid

    def _process(self, tid: int) -> tuple[int, list[bytes]]:
        """``(pid, its stat fields)`` of the process that thread ``tid`` belongs to.

        A thread's group is remembered by (tid, thread start time): a tid is reused
        only by a thread that starts later. :raises OSError: the thread is gone.
        """
        fields = _stat_fields(tid)
        if int(fields[17]) == 1:
            return tid, fields
        key = (tid, int(fields[19]))
        pid = self._groups.get(key)
        if pid is None:
            pid = _tgid(tid, fields)
            if len(self._groups) >= MAX_EXECS:
                self._groups.clear()
            self._groups[key] = pid
        return pid, (fields if pid == tid else _stat_fields(pid))

    def identify(self, pid: int) -> ProcessIdentity:
        """Snapshot of ``pid`` now: its binary (a marker if a mapping is tainted) and ancestors.

        :param pid: a thread id (notifications name the calling thread).
        :raises OSError: the process vanished.
        """
        me, current = self._proc(*self._process(pid))
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
        link = _readlink(b"/proc/%d/fd/%d" % (pid, sockfd))
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


__all__ = ["ConnectAttributor", "ExecRecord", "Proc", "ancestor_chain", "tainted_mapping", "tainted_of"]
