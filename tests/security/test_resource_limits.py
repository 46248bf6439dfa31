"""Resource limits with real sandboxes: the kernel stops a fork bomb, an allocation
past --memory, a /tmp and a workdir past their size, without harm to the host or
another sandbox; the user sees what happened in ``sandbox logs`` and ``sandbox get``.

The tests taking ``gw`` run on both compute drivers: ``local`` (a cgroup of the
supervisor's per sandbox) and ``docker`` (the container runtime's limits on the
container's cgroup, whose counters the supervisor reads). The delete tests are
about the local driver's host-side cgroup and mounts; with docker they live and
go with the container (``tests/e2e/test_docker_driver.py`` checks it is removed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import OPENSHELL  # noqa: F401,E402 - tests/ is on sys.path (conftest)
from hostview import container, pids_running


def _sid(gw, name: str) -> str:
    return json.loads(gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout)["id"]


def _sandbox_dir(gw, name: str):
    return gw.state_dir / "sandboxes" / _sid(gw, name)


def _cgroup(gw, name: str) -> dict:
    return json.loads((_sandbox_dir(gw, name) / "cgroup.json").read_text())


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def _wait_for(predicate, timeout: float = 15.0):
    """Poll until ``predicate()`` is truthy (the supervisor checks limits once a second
    while the sandbox is active, at least every 5 s while it is idle)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _logs(gw, name: str) -> list[dict]:
    out = gw.cli("sandbox", "logs", name, "-o", "json", check=True).stdout.decode()
    return [json.loads(ln) for ln in out.splitlines() if ln.strip()]


def _events(gw, name: str, event: str) -> list[dict]:
    return [r for r in _logs(gw, name) if r.get("fields", {}).get("event") == event]


def _status_text(gw, name: str) -> str:
    return gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout.decode()


@pytest.fixture(scope="module")
def gw(any_gateway):
    return any_gateway


@pytest.fixture
def sandboxes(gw):
    made: list[str] = []

    def create(name: str, *flags: str) -> str:
        gw.cli("sandbox", "delete", name, timeout=180)
        gw.cli("sandbox", "create", "--name", name, *flags, "--detach", check=True, timeout=300)
        made.append(name)
        return name

    yield create
    for name in made:
        gw.cli("sandbox", "delete", name, timeout=180)


def _host_config(gw, name: str) -> dict:
    """The docker container's HostConfig (limits as the engine holds them)."""
    return container(gw, name).attrs["HostConfig"]


def test_cli_rejects_bad_limits_naming_the_flag(gateway):
    bad = (("--memory", "lots"), ("--memory", "512X"), ("--memory", "1Ki"), ("--cpu", "fast"), ("--cpu", "0"), ("--cpu", "1.2345"))
    bad += (("--disk", "big"), ("--disk", "1Mi"), ("--disk", "9Ti"), ("--disk", "-2Gi"))
    for flag, value in bad:
        p = gateway.cli("sandbox", "create", "--name", "rl-bad", flag, value, "--detach")
        err = p.stderr.decode()
        assert p.returncode == 2, err
        assert flag in err and value in err and "Traceback" not in err
    assert gateway.cli("sandbox", "get", "rl-bad").returncode != 0  # nothing was created


def test_cpu_and_memory_flags_set_the_cgroup_limits(gw, sandboxes):
    sandboxes("rl-cpu", "--cpu", "0.5", "--memory", "512Mi")
    if gw.driver == "docker":
        hc = _host_config(gw, "rl-cpu")
        assert (hc["NanoCpus"], hc["Memory"], hc["MemorySwap"], hc["PidsLimit"]) == (500_000_000, 512 * 2**20, 512 * 2**20, 2048), hc
        procs = None
    else:
        cg = _cgroup(gw, "rl-cpu")
        d = cg["dirs"]
        if cg["version"] == 1:
            assert _read(d["cpu"], "cpu.cfs_quota_us") == "50000" and _read(d["cpu"], "cpu.cfs_period_us") == "100000"
            assert _read(d["memory"], "memory.limit_in_bytes") == str(512 * 2**20)
            assert _read(d["pids"], "pids.max") == "2048"
        else:
            assert _read(d["unified"], "cpu.max") == "50000 100000"
            assert _read(d["unified"], "memory.max") == str(512 * 2**20)
            assert _read(d["unified"], "pids.max") == "2048"
        procs = d["pids"] if cg["version"] == 1 else d["unified"]
    # Every process of the sandbox is in it, an exec session included (its host pid
    # is in the cgroup), while inside the sandbox's cgroup namespace its own cgroup
    # is the root: no host cgroup path shows.
    p = gw.sx("rl-cpu", "cat", "/proc/self/cgroup")
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert all(line.split(":", 2)[2] == "/" for line in out.splitlines()), out
    marker = "2718.5"
    session = subprocess.Popen([OPENSHELL, "sandbox", "exec", "rl-cpu", "--", "sleep", marker], env=gw.env)
    try:
        if procs is not None:
            assert _wait_for(lambda: any(_cmdline(pid) == ["sleep", marker] for pid in _read(procs, "cgroup.procs").split()))
        else:  # docker: the session's process is in the container's cgroup
            cid = container(gw, "rl-cpu").id
            pid = _wait_for(lambda: pids_running(["sleep", marker]))[0]
            with open(f"/proc/{pid}/cgroup") as f:
                lines = [ln for ln in f.read().splitlines() if ":pids:" in ln or ln.startswith("0::")]
            assert lines and all(cid in ln for ln in lines), lines
    finally:
        session.kill()
        session.wait()


def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def test_decimal_memory_quantity_is_accepted(gw, sandboxes):
    sandboxes("rl-dec", "--memory", "512M", "--cpu", "1.5")
    if gw.driver == "docker":
        hc = _host_config(gw, "rl-dec")
        assert (hc["Memory"], hc["NanoCpus"]) == (512_000_000, 1_500_000_000), hc
        return
    cg = _cgroup(gw, "rl-dec")
    d = cg["dirs"]
    memory = _read(d["memory"], "memory.limit_in_bytes") if cg["version"] == 1 else _read(d["unified"], "memory.max")
    # the kernel rounds down to whole pages
    assert int(memory) == 512_000_000 // 4096 * 4096
    quota = _read(d["cpu"], "cpu.cfs_quota_us") if cg["version"] == 1 else _read(d["unified"], "cpu.max").split()[0]
    assert quota == "150000"


FORK_BOMB = """
import os, signal, time
children = []
try:
    while len(children) < 10000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    print("stopped", len(children), exc.errno, flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
for pid in children:
    os.waitpid(pid, 0)
"""


def test_fork_bomb_stops_at_the_pids_limit_and_others_keep_working(gw, sandboxes):
    sandboxes("rl-bomb", "--memory", "2Gi")
    sandboxes("rl-other")
    p = gw.sx("rl-bomb", "python3", "-c", FORK_BOMB, timeout=120)
    out = p.stdout.decode()
    assert "stopped" in out, (out, p.stderr.decode())
    forked = int(out.split()[1])
    assert 1900 < forked < 2048  # the launcher, the shell of the session… count too
    assert out.split()[2] == "11"  # EAGAIN
    # The host and another sandbox can still start processes.
    assert subprocess.run(["true"]).returncode == 0
    q = gw.sx("rl-other", "sh", "-c", "echo alive")
    assert q.returncode == 0 and q.stdout.decode().strip() == "alive"
    assert gw.sx("rl-bomb", "echo", "still here").returncode == 0
    assert _wait_for(lambda: _events(gw, "rl-bomb", "pids_limit"))
    assert "process limit reached" in _status_text(gw, "rl-bomb")


def test_allocation_past_memory_limit_is_oom_killed_and_shown(gw, sandboxes):
    sandboxes("rl-oom", "--memory", "256Mi")
    p = gw.sx("rl-oom", "python3", "-c", "b = bytearray(600 * 2**20); print('allocated')", timeout=120)
    assert p.returncode in (137, -9), (p.returncode, p.stderr.decode())
    assert b"allocated" not in p.stdout
    events = _wait_for(lambda: _events(gw, "rl-oom", "oom_kill"))
    assert events and events[0]["fields"]["memory_limit"] == "256Mi"
    assert "out of memory" in _status_text(gw, "rl-oom")
    # The sandbox itself lives on.
    assert gw.sx("rl-oom", "echo", "ok").stdout.decode().strip() == "ok"


def test_tmp_is_a_size_limited_tmpfs_off_the_host_disk(gw, sandboxes):
    sandboxes("rl-tmp")
    write = "b = bytes(2**20)\nwith open('/tmp/big', 'wb') as f:\n    for _ in range(1100):\n        f.write(b)\n"
    p = gw.sx("rl-tmp", "python3", "-c", write, timeout=120)
    text = p.stderr.decode()
    assert p.returncode != 0 and "No space left on device" in text, text
    if gw.driver == "docker":
        # The tmpfs is mounted inside the container: the 1 GiB is in memory, not in
        # the container's writable layer on the host's disk.
        line = [ln.split() for ln in gw.sx("rl-tmp", "cat", "/proc/self/mountinfo").stdout.decode().splitlines() if ln.split()[4] == "/tmp"]
        assert line and line[-1][line[-1].index("-") + 1] == "tmpfs", line
        upper = container(gw, "rl-tmp").attrs["GraphDriver"]["Data"]["UpperDir"]
        assert not list(Path(upper).rglob("big"))
    else:
        host_tmp = _sandbox_dir(gw, "rl-tmp") / "tmp"
        assert os.path.ismount(host_tmp)
        big = host_tmp / "big"
        # The 1 GiB the sandbox wrote is on the tmpfs, not on the host's disk.
        assert big.stat().st_size == 2**30
        assert big.stat().st_dev != os.stat(gw.state_dir).st_dev
    assert _wait_for(lambda: _events(gw, "rl-tmp", "tmp_full"))
    assert "/tmp is full" in _status_text(gw, "rl-tmp")
    assert gw.sx("rl-tmp", "rm", "/tmp/big").returncode == 0
    _assert_full_is_cleared(gw, "rl-tmp", "/tmp is full", "tmp_freed")


def _reason(gw, name: str) -> tuple[str, str]:
    """``(phase, reason)`` as ``sandbox get`` shows them."""
    rec = json.loads(_status_text(gw, name))
    return rec["phase"], rec.get("reason", "")


def _assert_full_is_cleared(gw, name: str, claim: str, event: str) -> None:
    """Once the sandbox freed the space, the next limit check (within a second: the exec that freed it counts as activity) takes
    ``claim`` out of the status: the sandbox is READY without it, and the log says so."""
    assert _wait_for(lambda: claim not in _reason(gw, name)[1], 10), _reason(gw, name)
    assert _reason(gw, name)[0] == "READY"
    assert _wait_for(lambda: _events(gw, name, event))


def _loops_of(image) -> list[str]:
    """Loop devices whose backing file is ``image`` (also once it is deleted)."""
    found = []
    for name in os.listdir("/sys/block"):
        try:
            backing = _read(f"/sys/block/{name}/loop", "backing_file")
        except OSError:
            continue
        if backing.removesuffix(" (deleted)") == str(image):
            found.append(name)
    return found


def _mounted_under(d) -> list[str]:
    """Mount points at or below directory ``d`` in this (the host's) mount namespace."""
    prefix = str(d)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def test_delete_removes_the_cgroup_and_the_tmpfs(gateway):
    gateway.cli("sandbox", "create", "--name", "rl-del", "--detach", check=True)
    d = _sandbox_dir(gateway, "rl-del")
    cg = _cgroup(gateway, "rl-del")
    assert all(os.path.isdir(p) for p in cg["dirs"].values())
    assert os.path.ismount(d / "workdir") and _loops_of(d / "workdir.ext4")
    gateway.cli("sandbox", "delete", "rl-del", check=True, timeout=120)
    assert not any(os.path.exists(p) for p in cg["dirs"].values())
    assert not _mounted_under(d)
    assert _wait_for(lambda: not _loops_of(d / "workdir.ext4"))  # released with the last mount
    assert not d.exists()


def test_delete_after_a_crashed_supervisor_still_removes_the_limits(gateway):
    gateway.cli("sandbox", "create", "--name", "rl-crash", "--detach", check=True)
    d = _sandbox_dir(gateway, "rl-crash")
    cg = _cgroup(gateway, "rl-crash")
    # A process holding the workdir (its cwd) when the supervisor dies.
    gateway.sx("rl-crash", "sh", "-c", "cd /sandbox && nohup sleep 300 >/dev/null 2>&1 &")
    os.kill(int((d / "supervisor.pid").read_text()), signal.SIGKILL)
    gateway.cli("sandbox", "delete", "rl-crash", check=True, timeout=120)
    assert not any(os.path.exists(p) for p in cg["dirs"].values())
    assert not _mounted_under(d)
    assert _wait_for(lambda: not _loops_of(d / "workdir.ext4"))
    assert not d.exists()


WRITE_48M = "b = bytes(2**20)\nwith open('/sandbox/big', 'wb') as f:\n    for _ in range(48):\n        f.write(b)\n        f.flush()\n"


def test_workdir_past_its_disk_limit_is_enospc_and_shown_and_nothing_else_fills(gw, sandboxes):
    # docker: the driver makes and loop-mounts the image on the host too, and binds it
    # into the container (docs/docker-driver.md); the checks are the same.
    gateway = gw
    sandboxes("rl-disk", "--disk", "32Mi")
    sandboxes("rl-disk-other")
    d = _sandbox_dir(gateway, "rl-disk")
    p = gateway.sx("rl-disk", "sh", "-c", "df -k /sandbox | tail -1")
    assert p.returncode == 0 and 24 * 1024 < int(p.stdout.split()[1]) <= 32 * 1024, p.stdout
    p = gateway.sx("rl-disk", "python3", "-c", WRITE_48M, timeout=120)
    text = p.stderr.decode()
    assert p.returncode != 0 and "No space left on device" in text, text
    # The sandbox's files are on its image, which never takes more than the limit on the host.
    assert (d / "workdir.ext4").stat().st_blocks * 512 <= 32 * 2**20
    assert (d / "workdir" / "big").stat().st_dev != os.stat(gateway.state_dir).st_dev
    events = _wait_for(lambda: _events(gateway, "rl-disk", "workdir_full"))
    assert events and events[0]["fields"]["disk_limit"] == "32Mi"
    assert "/sandbox is full (32Mi)" in _status_text(gateway, "rl-disk")
    # Another sandbox (default 10Gi) writes more than that without trouble.
    q = gateway.sx("rl-disk-other", "python3", "-c", WRITE_48M + "print('ok')", timeout=120)
    assert q.returncode == 0 and q.stdout.decode().strip() == "ok", q.stderr.decode()
    # Space freed is usable again, and the status no longer says it is full.
    assert gateway.sx("rl-disk", "rm", "/sandbox/big").returncode == 0
    assert gateway.sx("rl-disk", "sh", "-c", "echo fits > /sandbox/small && cat /sandbox/small").stdout.decode() == "fits\n"
    _assert_full_is_cleared(gateway, "rl-disk", "/sandbox is full", "workdir_freed")


FILL_INODES = """
n = 0
try:
    while True:
        open(f'/sandbox/f/{n}', 'w').close()
        n += 1
except OSError as exc:
    print(n, exc.errno)
"""


def test_a_workdir_out_of_inodes_is_shown_until_files_are_removed(gw, sandboxes):
    sandboxes("rl-inodes", "--disk", "32Mi")
    p = gw.sx("rl-inodes", "sh", "-c", 'mkdir /sandbox/f && python3 -c "$0"', FILL_INODES, timeout=120)
    made, errno = p.stdout.decode().split()
    assert int(made) > 100 and errno == "28", p.stdout  # ENOSPC with almost all the blocks free
    # Named as inodes, not as space: df shows the blocks almost all free.
    assert _wait_for(lambda: "/sandbox is out of inodes (" in _reason(gw, "rl-inodes")[1]), _reason(gw, "rl-inodes")
    assert "in 32Mi): creating files fails with ENOSPC" in _reason(gw, "rl-inodes")[1]
    assert gw.sx("rl-inodes", "rm", "-rf", "/sandbox/f").returncode == 0
    _assert_full_is_cleared(gw, "rl-inodes", "/sandbox is out of inodes", "workdir_freed")


def test_a_disk_limit_beyond_the_hosts_free_space_is_refused(gw):
    # The workdir image is sparse: a limit larger than what the host has free would let
    # one sandbox fill the host's disk.
    gw.cli("sandbox", "delete", "rl-huge", timeout=180)
    try:
        p = gw.cli("sandbox", "create", "--name", "rl-huge", "--disk", "8Ti", "--detach", timeout=300)
        err = p.stderr.decode()
        assert p.returncode != 0 and "free on the host's file system" in err and "smaller --disk" in err, err
    finally:
        gw.cli("sandbox", "delete", "rl-huge", timeout=180)
