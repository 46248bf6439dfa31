"""Concurrent identity lookups share one ``/proc`` pass (``identity._Batcher``) and
still answer each connection with its own holder, or deny it on its own."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest
from openshell.supervisor.proxy import identity


def _pairs(srv: socket.socket, n: int) -> list[tuple[socket.socket, socket.socket]]:
    out = []
    for _ in range(n):
        cli = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        out.append((cli, conn))
    return out


def test_many_concurrent_lookups_each_find_their_holder():
    async def main() -> list[identity.ProcessIdentity]:
        resolver = identity.IdentityResolver(None)
        try:
            with socket.socket() as srv:
                srv.bind(("127.0.0.1", 0))
                srv.listen(64)
                pairs = _pairs(srv, 40)
                try:
                    lookups = []
                    for _, conn in pairs:
                        peer, local = conn.getpeername(), conn.getsockname()
                        lookups.append(resolver.lookup(peer[0], peer[1], local[0], local[1]))
                    return await asyncio.gather(*lookups)
                finally:
                    for cli, conn in pairs:
                        cli.close()
                        conn.close()
        finally:
            resolver.close()

    idents = asyncio.run(main())
    assert len(idents) == 40
    assert all(os.getpid() in ident.pids for ident in idents)
    assert {ident.binary for ident in idents} == {os.path.realpath(sys.executable)}


def test_a_pass_answers_each_request_on_its_own():
    # One request names a socket that does not exist, one is held by a child
    # process with another executable: each gets its own answer in the same pass.
    resolver = identity.IdentityResolver(None)
    child = None
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(4)
            ((cli, conn),) = _pairs(srv, 1)
            child = subprocess.Popen(["/bin/sleep", "30"], pass_fds=(cli.fileno(),), stdin=subprocess.DEVNULL)
            own = socket.create_connection(srv.getsockname())
            own_conn, _ = srv.accept()
            try:
                reqs = [
                    (*conn.getpeername(), *conn.getsockname()),
                    ("127.0.0.1", 1, "127.0.0.1", 2),
                    (*own_conn.getpeername(), *own_conn.getsockname()),
                ]
                results = resolver._executor.submit(resolver.lookup_many_sync, reqs).result(10)
            finally:
                for s in (cli, conn, own, own_conn):
                    s.close()
        shared, missing, mine = results
        assert isinstance(shared, identity.IdentityError) and "different executables" in str(shared)
        assert isinstance(missing, identity.IdentityError)
        assert isinstance(mine, identity.ProcessIdentity) and os.getpid() in mine.pids
    finally:
        if child is not None:
            child.kill()
            child.wait()
        resolver.close()


def test_a_cancelled_lookup_does_not_break_the_next_ones():
    async def main() -> identity.ProcessIdentity:
        resolver = identity.IdentityResolver(None)
        try:
            with socket.socket() as srv:
                srv.bind(("127.0.0.1", 0))
                srv.listen(4)
                ((cli, conn),) = _pairs(srv, 1)
                with cli, conn:
                    peer, local = conn.getpeername(), conn.getsockname()
                    first = asyncio.ensure_future(resolver.lookup(peer[0], peer[1], local[0], local[1]))
                    await asyncio.sleep(0)
                    first.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await first
                    return await resolver.lookup(peer[0], peer[1], local[0], local[1])
        finally:
            resolver.close()

    assert os.getpid() in asyncio.run(main()).pids
