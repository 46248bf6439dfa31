"""Connect-time attribution: the maps taint check, the ancestor-time rule, and a real listener."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from openshell.supervisor.proxy import attribution
from openshell.supervisor.proxy.attribution import ConnectAttributor, ExecRecord, Proc, ancestor_chain, tainted_mapping, tainted_of
from openshell.supervisor.proxy.identity import IdentityError

LIBC = "7f00-7f10 r-xp 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6\n"


def _stat(uid: int = 0, mode: int = 0o100755):
    return lambda path: SimpleNamespace(st_uid=uid, st_mode=mode)


# --------------------------------------------------------------------------- taint


def test_system_libraries_and_anonymous_code_are_clean():
    maps = LIBC + "7f20-7f30 rwxp 00000000 00:00 0 \n7f40-7f50 r-xp 00000000 00:00 0 [vdso]\n"
    assert tainted_mapping(maps, ["/sandbox"], 1000, stat=_stat()) is None


def test_library_under_a_writable_directory_is_tainted():
    maps = LIBC + "7f20-7f30 r-xp 00000000 08:01 99 /sandbox/evil.so\n"
    assert tainted_mapping(maps, ["/sandbox"], 1000, stat=_stat()) == "/sandbox/evil.so"
    assert tainted_mapping(maps.replace("/sandbox", "/tmp"), [], 1000, stat=_stat()) == "/tmp/evil.so"


def test_non_executable_mapping_of_a_writable_file_is_clean():
    maps = LIBC + "7f20-7f30 rw-p 00000000 08:01 99 /sandbox/data.bin\n"
    assert tainted_mapping(maps, ["/sandbox"], 1000, stat=_stat()) is None


@pytest.mark.parametrize("path", ["/memfd:x (deleted)", "/usr/lib/libgone.so (deleted)", "/memfd:payload"])
def test_memfd_and_deleted_files_are_tainted(path):
    assert tainted_mapping(LIBC + f"7f20-7f30 r-xp 00000000 00:01 9 {path}\n", [], stat=_stat()) == path


def test_file_owned_by_the_sandbox_user_or_world_writable_is_tainted():
    maps = "7f20-7f30 r-xp 00000000 08:01 9 /opt/lib.so\n"
    assert tainted_mapping(maps, [], 1000, stat=_stat(uid=1000)) == "/opt/lib.so"
    assert tainted_mapping(maps, [], 1000, stat=_stat(mode=0o100777)) == "/opt/lib.so"
    assert tainted_mapping(maps, [], 1000, stat=_stat()) is None


def test_unstatable_file_is_tainted():
    def gone(path):
        raise FileNotFoundError(path)

    assert tainted_mapping("7f20-7f30 r-xp 00000000 08:01 9 /opt/lib.so\n", [], stat=gone) == "/opt/lib.so"


def test_a_path_that_looks_like_a_mapping_cannot_hide_an_executable_one():
    # The search is not anchored at line starts: text in a path may add an entry
    # (which can only taint), never swallow the next line.
    maps = "7f00-7f10 r--p 00000000 08:01 5 /sandbox/a r-xp 00000000 08:01 1234 /usr/lib/x.so\n" + "7f20-7f30 r-xp 00000000 08:01 99 /sandbox/evil.so\n"
    assert tainted_mapping(maps, [], 1000, stat=_stat()) == "/sandbox/evil.so"


_MAPPER = textwrap.dedent(
    """\
    import mmap, os, sys, time
    fd = os.memfd_create("payload")
    os.write(fd, b"\\xc3" * 4096)
    m1 = mmap.mmap(fd, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC, flags=mmap.MAP_PRIVATE)
    with open(sys.argv[1], "wb") as f:
        f.write(b"\\xc3" * 4096)
    f = open(sys.argv[1], "rb")
    m2 = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC, flags=mmap.MAP_PRIVATE)
    print("mapped", flush=True)
    sys.stdin.read()
    """
)


def test_executable_mappings_of_a_memfd_and_a_writable_file_are_seen_by_both_listings(tmp_path):
    lib = tmp_path / "lib.so"
    proc = subprocess.Popen([sys.executable, "-c", _MAPPER, str(lib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"mapped\n"
        text = attribution._text_mappings(attribution._read_bytes(b"/proc/%d/maps" % proc.pid))
        paths = {path for _, path in text}
        assert {str(lib), "/memfd:payload (deleted)", os.path.realpath(sys.executable)} <= paths
        queried = attribution._query_mappings(proc.pid)
        if queried is not None:  # Linux 6.11+ (PROCMAP_QUERY): the same files, without the kernel's [vdso]
            assert {path for _, path in queried} == {p for p in paths if not p.startswith("[")}
        for listing in (text, queried or text):
            assert tainted_of(listing, [str(tmp_path)]) in (str(lib), "/memfd:payload (deleted)")
            assert tainted_of([m for m in listing if m[1] != str(lib)], []) == "/memfd:payload (deleted)"
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()  # closed now, not by a later garbage collection (fd-counting tests)
        proc.stdout.close()


# --------------------------------------------------------------------------- ancestors

CHILD = Proc(pid=30, start=1000, exe="/usr/bin/python3.11")
SHELL = Proc(pid=20, start=900, exe="/usr/bin/dash")
AGENT = Proc(pid=10, start=500, exe="/usr/bin/node")


def test_ancestors_that_did_not_exec_since_count():
    execs = {(20, 900): ExecRecord(ticks=900.5, children=frozenset()), (10, 500): ExecRecord(ticks=501.0, children=frozenset())}
    assert ancestor_chain(CHILD, [SHELL, AGENT], execs) == ("/usr/bin/dash", "/usr/bin/node")


def test_parent_that_exec_d_after_the_child_was_created_is_discounted():
    # The reparenting attack: python forks, then the parent execs curl.
    execs = {(20, 900): ExecRecord(ticks=1000.2, children=frozenset({30}))}
    assert ancestor_chain(CHILD, [SHELL, AGENT], execs) == ("/usr/bin/node",)


def test_exec_clearly_after_the_child_start_discounts_even_without_the_children_snapshot():
    execs = {(20, 900): ExecRecord(ticks=1005.0, children=frozenset())}
    assert ancestor_chain(CHILD, [SHELL], execs) == ()


def test_exec_within_the_child_s_start_tick_and_not_its_parent_counts():
    # Start times are whole ticks: an exec in the same tick, before the fork, is not "after".
    execs = {(20, 900): ExecRecord(ticks=1000.7, children=frozenset())}
    assert ancestor_chain(CHILD, [SHELL], execs) == ("/usr/bin/dash",)


def test_exec_record_of_a_reused_pid_is_ignored():
    execs = {(20, 12): ExecRecord(ticks=5000.0, children=frozenset({30}))}  # other start time
    assert ancestor_chain(CHILD, [SHELL], execs) == ("/usr/bin/dash",)


def test_tainted_ancestor_is_discounted_and_the_walk_goes_on():
    curl = Proc(pid=20, start=900, exe="/usr/bin/curl", tainted="/sandbox/evil.so")
    assert ancestor_chain(CHILD, [curl, AGENT], {}) == ("/usr/bin/node",)


# --------------------------------------------------------------------------- real kernel

_CHILD = textwrap.dedent(
    """\
    import os, socket, sys
    from openshell_plugin_seccomp import build_filter, _send_listener
    f = build_filter(notify=True)
    f.load()
    _send_listener(f, int(sys.argv[1]))
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    print(os.fstat(s.fileno()).st_ino, flush=True)
    os.dup2(s.fileno(), 0)
    os.execv("/usr/bin/cat", ["cat"])
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (seccomp user notification of another process)")
def test_connect_then_exec_is_attributed_to_the_connecting_program():
    attributor = ConnectAttributor()
    server = socket.create_server(("127.0.0.1", 0))
    try:
        chan = attributor.channel()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(chan.fileno()), str(server.getsockname()[1])], pass_fds=(chan.fileno(),), stdout=subprocess.PIPE
        )
        chan.close()
        conn, _ = server.accept()
        inode = int(proc.stdout.readline())
        conn.sendall(b"x")  # cat (the exec'd program) now holds the socket
        ident = attributor.take(inode)
        assert ident.binary == os.path.realpath(sys.executable)
        assert ident.binary != "/usr/bin/cat"
        with pytest.raises(IdentityError, match="no connect"):
            attributor.take(inode + 10**9)
        conn.close()
        proc.stdout.close()
        proc.wait(timeout=10)
    finally:
        server.close()
        attributor.close()


def test_lookups_deny_once_the_listener_thread_failed():
    attributor = ConnectAttributor()
    try:
        attributor.failed = "RuntimeError('boom')"
        with pytest.raises(IdentityError, match="attribution stopped"):
            attributor.take(1)
    finally:
        attributor.close()
