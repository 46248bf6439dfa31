"""A sandbox's own PID, IPC, UTS and cgroup namespaces (``openshell.supervisor.sandbox_ns``)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from openshell.supervisor import native_init
from openshell.supervisor.sandbox_ns import SandboxNamespaces, SandboxNamespacesError, hostname_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


# Both inits must behave the same: every test that starts one runs with each.
@pytest.fixture(params=["python", "native"])
def init(request):
    if request.param == "native" and native_init.build() is None:
        pytest.skip("no C compiler here: the native init cannot be built")
    return request.param


_HOME = ("pid_for_children", "ipc", "uts", "cgroup")


def _home() -> dict[str, str]:
    return {n: os.readlink(f"/proc/thread-self/ns/{n}") for n in _HOME}


@pytest.fixture
def ns(init):
    made = SandboxNamespaces.create("ns-test", init=init)
    yield made
    made.close()


def _run(ns: SandboxNamespaces, script: str) -> subprocess.Popen:
    with ns.entered():
        return subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)


def test_processes_started_in_the_namespaces_share_them_and_the_thread_goes_home(ns):
    before = _home()
    first = _run(ns, "readlink /proc/self/ns/pid /proc/self/ns/ipc; hostname")
    second = None

    def in_thread() -> None:
        nonlocal second
        second = _run(ns, "readlink /proc/self/ns/pid /proc/self/ns/ipc; hostname")

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    out1, out2 = first.communicate()[0].split(), second.communicate()[0].split()
    assert out1 == out2
    assert out1[0] != os.readlink("/proc/self/ns/pid") and out1[1] != os.readlink("/proc/self/ns/ipc")
    assert out1[2] == "ns-test" and os.uname().nodename != "ns-test"
    assert _home() == before


def test_processes_inside_cannot_see_host_pids(ns):
    # the sandbox process's own pid is small, and a host pid is not there
    p = _run(ns, f"echo $$; kill -0 {os.getpid()} 2>/dev/null && echo SEEN || echo GONE")
    own, verdict = p.communicate()[0].split()
    assert int(own) < 100 and verdict == "GONE"


def test_close_ends_every_process_and_later_entries_fail(ns):
    p = _run(ns, "sleep 300")
    ns.close(timeout=0.1)  # init's exit then waits for us to reap p
    assert p.wait(timeout=10) != 0
    ns._proc.wait(timeout=10)
    assert not ns.alive()
    with pytest.raises(SandboxNamespacesError):
        with ns.entered():
            pass


def test_init_exits_when_the_supervisor_side_is_gone(init):
    made = SandboxNamespaces.create("ns-test", init=init)
    try:
        os.close(made._keepalive)  # what the supervisor's exit does to the pipe
        made._keepalive = -1
        made._proc.wait(timeout=10)
        assert not made.alive()
    finally:
        made.close()


@pytest.mark.parametrize(
    ("name", "host"),
    [("demo", "demo"), ("my sandbox!", "my-sandbox"), ("", "sandbox"), ("x" * 80, "x" * 64)],
)
def test_hostname_for(name, host):
    assert hostname_for(name) == host


def test_an_init_that_cannot_join_its_cgroup_fails_the_start_and_is_ended(tmp_path, init):
    # start() returns at once; the failure shows when the start waits for init
    # (before READY) or when anything would be launched in the namespaces.
    made = SandboxNamespaces.start("ns-test", [str(tmp_path / "no-such-cgroup" / "cgroup.procs")], init=init)
    try:
        with pytest.raises(SandboxNamespacesError, match="could not join the cgroup"):
            made.wait_ready()
        assert not made.alive()
        with pytest.raises(SandboxNamespacesError):
            with made.entered():
                pass
    finally:
        made.close()


def test_entering_waits_for_init_to_be_ready(init):
    made = SandboxNamespaces.start("ns-test", init=init)
    try:
        with made.entered():
            proc = subprocess.Popen(["cat", "/proc/self/cgroup"], stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=10)
        # born after init made the cgroup namespace: its cgroups are the namespace's root
        assert all(line.endswith(":/") for line in out.splitlines()), out
    finally:
        made.close()


def test_init_shows_no_host_path_and_sees_no_host_mount(ns):
    # what every sandbox process reads about its pid 1 (its /proc is the sandbox's;
    # here, without the launcher's /proc mount, read init's entries from the host)
    with open(f"/proc/{ns.pid}/cmdline", "rb") as f:
        assert f.read() == b"openshell-init\0"
    with open(f"/proc/{ns.pid}/comm") as f:
        assert f.read() == "openshell-init\n"
    with open(f"/proc/{ns.pid}/mountinfo") as f:
        mounts = f.read().splitlines()
    assert len(mounts) == 1 and " / / " in mounts[0] and "tmpfs" in mounts[0], mounts


def test_signals_from_inside_do_not_stop_init_and_orphans_are_reaped(ns):
    # the shell's child outlives it: init adopts it and must reap it when it exits
    p = _run(ns, "for s in TERM INT HUP KILL STOP USR1 CHLD; do kill -$s 1; done; (sleep 0.2 &) ; echo done")
    assert p.communicate(timeout=10)[0].strip() == "done"
    p.wait()
    deadline = time.monotonic() + 10
    while True:
        with open(f"/proc/{ns.pid}/task/{ns.pid}/children") as f:
            kids = f.read().split()
        if not kids:
            break
        assert time.monotonic() < deadline, f"init kept children {kids}"
        time.sleep(0.05)
    assert ns.alive()
    with open(f"/proc/{ns.pid}/status") as f:
        assert "State:\tS" in f.read()  # not stopped by the SIGSTOP either
    q = _run(ns, "echo still")
    assert q.communicate(timeout=10)[0].strip() == "still"


def test_the_native_init_is_much_smaller_than_the_python_one():
    if native_init.build() is None:
        pytest.skip("no C compiler here: the native init cannot be built")
    pss = {}
    for kind in ("python", "native"):
        made = SandboxNamespaces.create("ns-test", init=kind)
        try:
            with open(f"/proc/{made.pid}/smaps_rollup") as f:
                pss[kind] = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        finally:
            made.close()
    assert pss["native"] * 4 < pss["python"], pss


def test_the_log_says_which_init_runs(init, caplog):
    caplog.set_level("INFO", logger="openshell.supervisor")
    made = SandboxNamespaces.create("ns-test", init=init)
    try:
        assert f"init={init}" in caplog.text
        exe = os.readlink(f"/proc/{made.pid}/exe")
        assert ("python" in exe) == (init == "python"), exe
    finally:
        made.close()
