"""The identity lookup's memory of processes outside the sandbox (``identity._OutsideCache``).

Remembering "outside" verdicts is only safe for processes that cannot have
been about to enter the sandbox (old enough) and only for the very same
process (a reused pid has a new ``/proc/<pid>`` inode).
"""

from __future__ import annotations

import os
import subprocess
import time

from openshell.supervisor.proxy import identity


def _proc(pid: int) -> tuple[str, int]:
    return str(pid), os.stat(f"/proc/{pid}").st_ino


def test_old_process_outside_is_remembered_until_the_ttl():
    cache = identity._OutsideCache()
    init = _proc(1)  # pid 1 started long ago
    now = time.monotonic()
    cache.remember(init, now)
    assert cache.unknown([init], now) == []
    assert cache.unknown([init], now + identity.OUTSIDE_TTL + 1) == [init]


def test_young_process_is_never_remembered():
    child = subprocess.Popen(["sleep", "30"])
    try:
        proc = _proc(child.pid)
        cache = identity._OutsideCache()
        now = time.monotonic()
        cache.remember(proc, now)
        assert cache.unknown([proc], now) == [proc]  # checked again at every lookup
    finally:
        child.kill()
        child.wait()


def test_reused_pid_with_a_new_proc_inode_is_checked_again():
    cache = identity._OutsideCache()
    name, inode = _proc(1)
    now = time.monotonic()
    cache.remember((name, inode), now)
    assert cache.unknown([(name, inode + 1)], now) == [(name, inode + 1)]


def test_exited_processes_are_forgotten():
    cache = identity._OutsideCache()
    now = time.monotonic()
    cache.remember(_proc(1), now)
    cache.prune([])
    assert cache.unknown([_proc(1)], now) == [_proc(1)]


def test_lookup_still_finds_a_holder_after_outside_verdicts_were_cached():
    # Host mode: every process shares the namespace. Warm the cache, then open a
    # new socket: its holder (this process) must still be found.
    import socket

    resolver = identity.IdentityResolver(None)
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            for _ in range(2):
                with socket.create_connection(srv.getsockname()) as cli:
                    conn, _ = srv.accept()
                    with conn:
                        peer, local = conn.getpeername(), conn.getsockname()
                        fut = resolver._executor.submit(resolver.lookup_sync, peer[0], peer[1], local[0], local[1])
                        ident = fut.result(10)
                        assert os.getpid() in ident.pids
                        assert cli.fileno() >= 0
    finally:
        resolver.close()
