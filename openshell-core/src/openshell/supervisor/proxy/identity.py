"""Which process opened a proxy connection — from the kernel only (POLICY.md §2.4).

Identity never comes from what the client says (environment, argv, headers).
For a connection accepted by the proxy we:

1. find the client socket's inode by its 4-tuple in the *sandbox's* network
   namespace. The lookups run in worker threads that entered that namespace
   once, at start (``setns`` only moves the calling thread). First choice is an
   exact inet_diag query on a netlink socket made in that thread (``sockdiag``,
   microseconds); the fallback reads ``/proc/thread-self/net/tcp{,6}``, which
   shows the reading thread's namespace (``/proc/self/net`` shows the thread
   group leader's, so it is not used) but walks the whole kernel hash table
   (milliseconds);
2. find every process holding ``socket:[inode]`` by scanning ``/proc/<pid>/fd``
   of the processes in that namespace. Which processes are in it is known only
   by asking each one (``/proc/<pid>/ns/net``, about 8 µs a process), which made
   this step cost ~0.5 ms per connection with ~100 processes on the host and
   grow with every other sandbox. So an "outside the sandbox" verdict is
   remembered (``_OutsideCache``) for a process that has lived at least
   ``OUTSIDE_MIN_AGE`` seconds, for ``OUTSIDE_TTL`` seconds, keyed by pid *and*
   the inode of its ``/proc/<pid>`` directory (free from ``getdents``; a reused
   pid gets a new inode, so a recycled pid is never mistaken for the old
   process). Only root can move a running process into the sandbox's namespace
   (``setns``), and the supervisor's launcher does it within milliseconds of
   the fork, which the minimum age covers; processes inside are never cached
   and their descriptors are scanned on every lookup;
3. read ``/proc/<pid>/exe`` (canonical path, `` (deleted)`` stripped) and walk
   ``ppid`` links for the ancestors, up to (not including) the first process
   outside the sandbox namespace or a pid in ``stop_at``.

Concurrent connections share one ``/proc`` pass (``_Batcher``): lookups that
arrive while a pass runs wait for the *next* pass, which starts after they were
queued, so every connection is still answered from a scan that began after its
socket existed; the pass finds the holders of every queued socket at once. At
100 simultaneous connections this turns 100 scans of every sandbox process's
descriptors into a handful. Executables and ``ppid`` links are read once per
pass (a per-pass memo, never kept across passes: ``exec`` changes them), and a
process's start time (immutable) is remembered per (pid, ``/proc`` inode) for
the age check of step 2.

Processes with different executables holding the socket, a missing entry, or
any ``/proc`` error raise ``IdentityError``: the caller denies (fail closed).

With a connect attributor (``attribution.ConnectAttributor``, sandboxes made by
the supervisor) steps 2 and 3 are replaced: the identity is the one recorded by
the kernel-notified ``connect()`` of the socket found in step 1, so a socket
passed on or an ``exec`` after ``connect`` does not change who connected; no
record denies. The ``/proc`` scan remains for host mode (tests, tools).

Known limit: ``/proc/<pid>/exe`` is rendered relative to the *proxy's* root, so
a binary that is visible at another path inside the sandbox's mount namespace
is reported at the path the supervisor sees.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import struct
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast

from openshell.supervisor import nsutil
from openshell.supervisor.proxy.sockdiag import SockDiag, SockDiagUnavailable

_DELETED = " (deleted)"
OUTSIDE_MIN_AGE = 10.0  # seconds a process must have lived before "outside" is remembered
OUTSIDE_TTL = 10.0  # seconds an "outside" verdict is trusted before it is checked again
_CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


class IdentityError(Exception):
    """The connecting process could not be determined unambiguously."""


@dataclass(frozen=True)
class ProcessIdentity:
    """The process behind a connection.

    :ivar binary: canonical executable path.
    :ivar ancestors: ancestors' executable paths, nearest first.
    :ivar pids: every pid holding the socket (all with the same executable).
    """

    binary: str
    ancestors: tuple[str, ...]
    pids: tuple[int, ...]


def _start_ticks(pid: int) -> int:
    """``starttime`` of ``/proc/<pid>/stat`` (clock ticks after boot).

    :raises OSError: the process is gone.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # comm may contain spaces and ')': fields after the last ')' start at field 3 (state).
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _age(pid: int) -> float:
    """Seconds since process ``pid`` started.

    :raises OSError: the process is gone.
    """
    return time.clock_gettime(time.CLOCK_BOOTTIME) - _start_ticks(pid) / _CLK_TCK


class _OutsideCache:
    """Processes known to be outside the sandbox's namespace: ``{(pid, proc inode): expiry}``.

    Shared by the worker threads; single dict operations are atomic under the
    GIL and a lost update only costs one more check.
    """

    def __init__(self) -> None:
        self._expiry: dict[tuple[str, int], float] = {}
        # start time per process (immutable; the key names one process, see above):
        # a young process is re-checked on every pass without re-reading its stat file
        self._started: dict[tuple[str, int], float] = {}

    def unknown(self, procs: list[tuple[str, int]], now: float) -> list[tuple[str, int]]:
        """The ``(pid, proc inode)`` entries of ``procs`` without a fresh "outside" verdict."""
        expiry = self._expiry
        return [p for p in procs if expiry.get(p, 0.0) <= now]

    def remember(self, proc: tuple[str, int], now: float) -> None:
        """Record ``proc`` as outside, if it is old enough (see the module docstring)."""
        started = self._started.get(proc)
        if started is None:
            try:
                started = _start_ticks(int(proc[0])) / _CLK_TCK
            except (OSError, ValueError, IndexError):
                return
            self._started[proc] = started
        if time.clock_gettime(time.CLOCK_BOOTTIME) - started < OUTSIDE_MIN_AGE:
            return
        self._expiry[proc] = now + OUTSIDE_TTL

    def prune(self, live: list[tuple[str, int]]) -> None:
        """Forget processes that no longer exist (keeps the map bounded by the process count)."""
        if len(self._expiry) > len(live) or len(self._started) > len(live):
            keep = set(live)
            self._expiry = {p: e for p, e in self._expiry.items() if p in keep}
            self._started = {p: t for p, t in self._started.items() if p in keep}


def _hex_addr(ip: str) -> tuple[str, str]:
    """``(table, hex)``: the ``/proc/net`` table holding ``ip`` and its hex spelling.

    The kernel prints each 32-bit word of the address in host byte order.
    IPv4-mapped IPv6 addresses are looked up in the IPv6 table.
    """
    addr = ipaddress.ip_address(ip)
    packed = addr.packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    text = "".join(f"{w:08X}" for w in words)
    return ("tcp" if addr.version == 4 else "tcp6"), text


@functools.lru_cache(maxsize=256)
def _candidates(ip: str) -> tuple[str, ...]:
    """The spellings a client address may have: v4 ``a.b.c.d`` and v6 ``::ffff:a.b.c.d``."""
    # Cached: a sandbox has one or two client addresses and the proxy one.
    addr = ipaddress.ip_address(ip)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return (str(addr.ipv4_mapped), str(addr))
    if addr.version == 4:
        return (str(addr), f"::ffff:{addr}")
    return (str(addr),)


def _netns_id(path: str) -> str:
    """``net:[inode]`` for a namespace file (what ``/proc/<pid>/ns/net`` links to)."""
    return f"net:[{os.stat(path).st_ino}]"


def _or_denial(step: Callable[..., T], *args: object) -> T | IdentityError:
    """``step(*args)``, or the ``IdentityError`` that denies this one connection:
    any failure of one lookup denies only that lookup (fail closed)."""
    try:
        return step(*args)
    except IdentityError as exc:
        return exc
    except OSError as exc:
        return IdentityError(f"/proc lookup failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad request denies only itself
        return IdentityError(f"identity lookup failed: {exc!r}")


Request = tuple[str, int, str, int]  # (peer_ip, peer_port, local_ip, local_port)
MAX_BATCH = 256  # connections answered by one /proc pass


class _Batcher:
    """Runs queued lookups together, one ``/proc`` pass at a time (event-loop side).

    A lookup joins the queue; the drain task takes everything queued (up to
    ``MAX_BATCH``), runs ``run_pass`` on it in ``executor`` and answers each
    future, then repeats while the queue is not empty. A lookup queued while a
    pass runs waits for the next one, which starts after it was queued.

    :param executor: the resolver's worker threads (they are in the sandbox's netns).
    :param run_pass: ``lookup_many_sync``.
    """

    def __init__(self, executor: ThreadPoolExecutor, run_pass: Callable[[Sequence[Request]], list]) -> None:
        self._executor = executor
        self._run_pass = run_pass
        self._queue: list[tuple[Request, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def submit(self, request: Request) -> ProcessIdentity:
        """The identity for ``request``; raises ``IdentityError``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.append((request, fut))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[Request, asyncio.Future]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                batch = [(r, f) for r, f in batch if not f.done()]  # cancelled: connection gone
                if not batch:
                    continue
                try:
                    results = await loop.run_in_executor(self._executor, self._run_pass, [r for r, _ in batch])
                except Exception as exc:  # noqa: BLE001 - e.g. the namespace vanished: the pool is broken; deny
                    results = [IdentityError(f"identity lookup failed: {exc!r}")] * len(batch)
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
                batch = []
        finally:
            self._task = None
            for _, fut in (*batch, *self._queue):  # only when the drain itself was cancelled
                if not fut.done():
                    fut.set_exception(IdentityError("identity lookup cancelled"))
            self._queue = []


class Attributor(Protocol):
    """Connect-time identity records by client socket inode (``attribution.ConnectAttributor``)."""

    def take(self, inode: int) -> ProcessIdentity:
        """The identity recorded at ``connect()``; raises ``IdentityError``."""

    def close(self) -> None:
        """Stop serving."""


class IdentityResolver:
    """Maps proxy connections to the processes that opened them.

    :param netns: name of the sandbox's network namespace (``/run/netns/<name>``),
        or None for host mode (client and proxy in the proxy's own namespace; tests).
    :param stop_at: pids where the ancestor walk stops (exclusive). Host mode also
        stops at the proxy's own pid and pid 1, since everything else on the host
        shares the namespace.
    :param workers: threads doing ``/proc`` work (each enters ``netns`` once).
    :param attributor: connect-time records (``attribution.ConnectAttributor``);
        when given, it is the only source of identities (and closed with this resolver).
    :raises OSError: the namespace does not exist.
    """

    def __init__(self, netns: str | None, stop_at: Collection[int] = (), *, workers: int = 2, attributor: Attributor | None = None) -> None:
        self.netns = netns
        self.attributor = attributor
        if netns is None:
            self._ns_id = os.readlink("/proc/self/ns/net")
            self._stop = frozenset(stop_at) | {os.getpid(), 1, 0}
        else:
            self._ns_id = _netns_id(nsutil.netns_path(netns))
            self._stop = frozenset(stop_at) | {0}
        self._local = threading.local()  # per worker thread: its netlink socket
        self._outside = _OutsideCache()
        self._batcher: _Batcher | None = None  # made on the first lookup, in the proxy's loop
        self._loop_diag: SockDiag | None | bool = False  # the loop thread's inet_diag socket (False: not made yet)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="proxy-identity", initializer=self._enter_netns)

    def _enter_netns(self) -> None:
        if self.netns is None:
            return
        # Permanent for this worker thread: it only ever reads /proc for this sandbox.
        with open(nsutil.netns_path(self.netns), "rb") as target:
            nsutil.setns(target.fileno(), nsutil.CLONE_NEWNET)

    def close(self) -> None:
        """Stop the worker threads. Idempotent.

        Waits for them: a thread that entered the sandbox namespace keeps it (and
        its veth pair) alive until it exits, so teardown must not race it.
        """
        self._executor.shutdown(wait=True, cancel_futures=True)
        if isinstance(self._loop_diag, SockDiag):
            self._loop_diag.close()
        if self.attributor is not None:
            self.attributor.close()

    async def lookup(self, peer_ip: str, peer_port: int, local_ip: str, local_port: int) -> ProcessIdentity:
        """Identity of the process whose socket is ``peer_ip:peer_port`` → ``local_ip:local_port``.

        ``peer`` is the client's end as the proxy sees it, ``local`` the proxy's end.
        Runs in a worker thread, in a ``/proc`` pass shared with the lookups
        queued at the same time (module docstring). Raises ``IdentityError``.
        """
        if self.attributor is not None:
            if self._loop_diag is False:
                await self._make_loop_diag()
            ident = self.lookup_now(peer_ip, peer_port, local_ip, local_port)
            if ident is not None:
                return ident
        if self._batcher is None:
            self._batcher = _Batcher(self._executor, self.lookup_many_sync)
        return await self._batcher.submit((peer_ip, peer_port, local_ip, local_port))

    def lookup_now(self, peer_ip: str, peer_port: int, local_ip: str, local_port: int) -> ProcessIdentity | None:
        """``lookup`` answered at once in the calling (event loop) thread, or None when it
        cannot be (no connect attributor, the loop's inet_diag socket not made yet or
        unavailable): then ``await lookup(...)``.

        With a connect attributor a lookup is one inet_diag request (the kernel answers
        within the ``send``) and a dict look-up, tens of microseconds: answering it
        here saves the hand-off to a worker thread and back (a thread wake-up, two
        GIL hand-offs and a turn of the event loop, far more than the lookup itself
        once the loop is busy). Raises ``IdentityError`` (deny).
        """
        diag = self._loop_diag
        if self.attributor is None or not isinstance(diag, SockDiag):
            return None
        try:
            inode = self._socket_inode_diag(diag, peer_ip, peer_port, local_ip, local_port)
        except (SockDiagUnavailable, BlockingIOError):
            return None  # the worker threads answer (they fall back to /proc)
        except OSError as exc:
            raise IdentityError(f"socket lookup failed: {exc}") from None
        return self.attributor.take(inode)

    async def _make_loop_diag(self) -> None:
        """Make the event loop's own inet_diag socket (``lookup_now``), once, in a worker
        thread (so in the sandbox's namespace); None when inet_diag is unavailable."""
        loop = asyncio.get_running_loop()

        def make() -> SockDiag | None:
            try:
                return SockDiag(timeout=0.0)
            except SockDiagUnavailable:
                return None

        diag = await loop.run_in_executor(self._executor, make)
        if self._loop_diag is False:
            self._loop_diag = diag
        elif diag is not None:  # another lookup made one meanwhile
            diag.close()

    # ------------------------------------------------------------------ blocking part

    def lookup_sync(self, peer_ip: str, peer_port: int, local_ip: str, local_port: int) -> ProcessIdentity:
        """Blocking form of ``lookup``; call only from this resolver's worker threads
        (in namespace mode the TCP table read depends on the thread's namespace)."""
        result = self.lookup_many_sync([(peer_ip, peer_port, local_ip, local_port)])[0]
        if isinstance(result, IdentityError):
            raise result
        return result

    def lookup_many_sync(self, requests: Sequence[Request]) -> list[ProcessIdentity | IdentityError]:
        """One ``/proc`` pass for several connections; call only from the worker threads.

        :param requests: ``(peer_ip, peer_port, local_ip, local_port)`` per connection,
            each accepted before this call.
        :returns: per request, in order, its identity or the ``IdentityError`` that denies it.
        """
        inodes: list[int | IdentityError] = [_or_denial(self._socket_inode, *req) for req in requests]
        if self.attributor is not None:
            take = self.attributor.take
            return [inode if isinstance(inode, IdentityError) else _or_denial(take, inode) for inode in inodes]
        wanted = {i for i in inodes if isinstance(i, int)}
        try:
            holders = self._holders(wanted) if wanted else {}
        except OSError as exc:
            err = IdentityError(f"/proc lookup failed: {exc}")
            return [i if isinstance(i, IdentityError) else err for i in inodes]
        memo: dict[int, tuple[str, int]] = {}  # this pass only: exec changes a process's exe
        return [inode if isinstance(inode, IdentityError) else _or_denial(self._identity, inode, holders.get(inode, []), memo) for inode in inodes]

    def _identity(self, inode: int, pids: list[int], memo: dict[int, tuple[str, int]]) -> ProcessIdentity:
        if not pids:
            raise IdentityError(f"no process in the sandbox holds socket inode {inode}")
        exes = {pid: self._exe_memo(pid, memo) for pid in pids}
        distinct = sorted(set(exes.values()))
        if len(distinct) > 1:
            raise IdentityError(f"processes with different executables share the socket: {', '.join(distinct)}")
        first = min(pids)
        return ProcessIdentity(exes[first], self._ancestors(first, memo), tuple(sorted(pids)))

    def _diag(self) -> SockDiag | None:
        """This thread's inet_diag socket (made here, so in this thread's namespace), or
        None once inet_diag turned out to be unavailable."""
        # a thread-local attribute: False until this thread tried to make one
        diag = cast("SockDiag | None | Literal[False]", getattr(self._local, "diag", False))
        if diag is False:
            try:
                diag = SockDiag()
            except SockDiagUnavailable:
                diag = None
            self._local.diag = diag
        return diag

    def _socket_inode(self, peer_ip: str, peer_port: int, local_ip: str, local_port: int) -> int:
        # The client's socket: its local end is the proxy's peer, its remote end the proxy.
        diag = self._diag()
        if diag is not None:
            try:
                return self._socket_inode_diag(diag, peer_ip, peer_port, local_ip, local_port)
            except SockDiagUnavailable:
                diag.close()
                self._local.diag = None  # fall back to /proc for this thread from now on
        return self._socket_inode_proc(peer_ip, peer_port, local_ip, local_port)

    def _socket_inode_diag(self, diag: SockDiag, peer_ip: str, peer_port: int, local_ip: str, local_port: int) -> int:
        for client_ip in _candidates(peer_ip):
            for proxy_ip in _candidates(local_ip):
                if (":" in client_ip) != (":" in proxy_ip):
                    continue
                inode = diag.find_inode(client_ip, peer_port, proxy_ip, local_port)
                if inode == 0:  # TIME_WAIT and orphaned sockets have no owner any more
                    raise IdentityError("client socket has no owner any more")
                if inode is not None:
                    return inode
        raise IdentityError(f"no socket {peer_ip}:{peer_port} -> {local_ip}:{local_port} in the sandbox's network namespace")

    def _socket_inode_proc(self, peer_ip: str, peer_port: int, local_ip: str, local_port: int) -> int:
        for client_ip in _candidates(peer_ip):
            table, client_hex = _hex_addr(client_ip)
            for proxy_ip in _candidates(local_ip):
                ptable, proxy_hex = _hex_addr(proxy_ip)
                if ptable != table:
                    continue
                needle = f" {client_hex}:{peer_port:04X} {proxy_hex}:{local_port:04X} "
                inode = self._find_inode(table, needle)
                if inode is not None:
                    return inode
        raise IdentityError(f"no socket {peer_ip}:{peer_port} -> {local_ip}:{local_port} in the sandbox's TCP table")

    @staticmethod
    def _find_inode(table: str, needle: str) -> int | None:
        with open(f"/proc/thread-self/net/{table}") as f:
            text = f.read()
        pos = text.find(needle)
        if pos < 0:
            return None
        line = text[pos : text.find("\n", pos)].split()
        # fields after the match: st tx:rx tr:when retrnsmt uid timeout inode ...
        inode = int(line[8])
        if inode == 0:  # TIME_WAIT and orphaned sockets have no owner any more
            raise IdentityError(f"client socket has no owner (TCP state {line[2]})")
        return inode

    def _in_sandbox(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/net") == self._ns_id
        except OSError:  # exited, or a kernel thread
            return False

    def _pids_holding(self, inode: int) -> list[int]:
        return self._holders({inode}).get(inode, [])

    def _holders(self, inodes: Collection[int]) -> dict[int, list[int]]:
        """``{inode: [pid, ...]}``: the sandbox processes holding each socket inode (one pass)."""
        targets = {f"socket:[{inode}]": inode for inode in inodes}
        holders: dict[int, list[int]] = {}
        outside = self._outside
        now = time.monotonic()
        with os.scandir("/proc") as entries:
            procs = [(e.name, e.inode()) for e in entries if e.name.isdigit()]
        for proc in outside.unknown(procs, now):
            pid = int(proc[0])
            if not self._in_sandbox(pid):
                outside.remember(proc, now)
                continue
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue  # exited while scanning
            found: set[int] = set()
            for fd in fds:
                try:
                    inode = targets.get(os.readlink(f"{fd_dir}/{fd}"))
                except OSError:
                    continue
                if inode is not None and inode not in found:
                    found.add(inode)
                    holders.setdefault(inode, []).append(pid)
        outside.prune(procs)
        return holders

    @staticmethod
    def _exe(pid: int) -> str:
        path = os.readlink(f"/proc/{pid}/exe")
        return path.removesuffix(_DELETED)

    @staticmethod
    def _ppid(pid: int) -> int:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # comm may contain spaces and ')': the fields after the last ')' are fixed.
        return int(stat[stat.rindex(b")") + 2 :].split()[1])

    def _exe_memo(self, pid: int, memo: dict[int, tuple[str, int]]) -> str:
        return self._exe(pid) if pid not in memo else memo[pid][0]

    def _ancestors(self, pid: int, memo: dict[int, tuple[str, int]] | None = None) -> tuple[str, ...]:
        """Executables of ``pid``'s sandbox ancestors, nearest first; ``memo`` caches
        ``{pid: (exe, ppid)}`` within one pass."""
        memo = {} if memo is None else memo
        chain: list[str] = []
        seen = {pid}
        current = memo[pid][1] if pid in memo else self._ppid(pid)
        while current not in self._stop and current not in seen:
            if current not in memo:
                if not self._in_sandbox(current):
                    break
                memo[current] = (self._exe(current), self._ppid(current))
            seen.add(current)
            exe, parent = memo[current]
            chain.append(exe)
            current = parent
        return tuple(chain)
