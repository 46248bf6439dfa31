"""One sandbox must not reach into another, nor see the host's processes or IPC.

Two real sandboxes run at once with the isolation-checks policy, on each compute
driver (``local``: host processes; ``docker``: one container each). Each attack
that used to work (all sandboxes share a uid, and once shared the host's PID and
IPC namespaces) is tried from sandbox A against a process of sandbox B, whose
host pid this test (root on the host) looks up by its unique argv; every one
must fail.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import OPENSHELL, cases_dir, require_root  # tests/ is on sys.path (conftest)
from hostview import cmdline as _cmdline
from hostview import context as _ctx
from hostview import host_paths, pids_running, wait_for
from hostview import host_pids as _host_pids

pytestmark = pytest.mark.timeout(600)

A, B = "xs-a", "xs-b"
SLEEP_B = "3001.5"  # unique argv of B's long-running victim process


def _policy_yaml() -> str:
    doc = (cases_dir() / "isolation-checks.md").read_text()
    m = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert m, "no yaml policy block in isolation-checks.md"
    return m.group(1)


def _records(gw) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(gw.cli("sandbox", "list", "-o", "json", check=True).stdout)}


def _py(gw, sandbox: str, code: str, *args: str) -> str:
    p = gw.sx(sandbox, "python3", "-c", code, *args, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


@pytest.fixture(scope="module")
def two(any_gateway, tmp_path_factory):
    """Sandboxes A and B, and the host pid of a ``sleep`` running in B."""
    require_root()
    gateway = any_gateway
    policy = tmp_path_factory.mktemp("xs") / "policy.yaml"
    policy.write_text(_policy_yaml())
    for name in (A, B):
        gateway.cli("sandbox", "delete", name, timeout=180)
        gateway.cli("sandbox", "create", "--name", name, "--policy", str(policy), "--detach", check=True, timeout=300)
    gateway.sx(B, "sh", "-c", f"nohup sleep {SLEEP_B} >/dev/null 2>&1 &")
    victim = wait_for(lambda: pids_running(["sleep", SLEEP_B]), "B's sleep")[0]
    yield gateway, victim
    for name in (A, B):
        gateway.cli("sandbox", "delete", name, timeout=180)


def _limits_cpu(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max cpu time"):
            return line
    raise AssertionError("no cpu line")


ATTACKS = r"""
import ctypes, errno, os, resource, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, fn):
    try:
        fn()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def ioprio():
    # ioprio_set(IOPRIO_WHO_PROCESS, pid, IOPRIO_CLASS_IDLE << 13)
    if libc.syscall(251, 1, pid, 3 << 13) != 0:
        err = ctypes.get_errno(); raise OSError(err, os.strerror(err))
attempt("kill0", lambda: os.kill(pid, 0))
attempt("prlimit_get", lambda: resource.prlimit(pid, resource.RLIMIT_CPU))
attempt("prlimit_set", lambda: resource.prlimit(pid, resource.RLIMIT_CPU, (1, 1)))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19))
attempt("sched_setaffinity", lambda: os.sched_setaffinity(pid, {0}))
attempt("ioprio_set", ioprio)
"""


def test_no_process_call_reaches_a_process_of_another_sandbox(two):
    gw, victim = two
    before = _limits_cpu(victim)
    nice = Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[16]
    out = dict(line.split() for line in _py(gw, A, ATTACKS, str(victim)).splitlines())
    assert out == {k: "ESRCH" for k in ("kill0", "prlimit_get", "prlimit_set", "setpriority", "sched_setaffinity", "ioprio_set")}, out
    # and B's process is untouched
    assert _cmdline(victim) == ["sleep", SLEEP_B]
    assert _limits_cpu(victim) == before
    assert Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[16] == nice


SCAN = r"""
import errno, os, resource, sys
top = int(sys.argv[1])
found = set()
for pid in range(1, top):
    try:
        os.kill(pid, 0); found.add(pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        found.add(pid)
    try:
        resource.prlimit(pid, resource.RLIMIT_CPU); found.add(pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        found.add(pid)
print(sorted(found))
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
"""


def test_pid_scan_finds_only_the_sandboxs_own_processes(two):
    gw, victim = two
    top = max(_host_pids()) + 200
    found_line, listed_line = _py(gw, A, SCAN, str(top)).splitlines()
    found, listed = json.loads(found_line), json.loads(listed_line)
    assert victim not in found
    # Everything the scan finds is in the sandbox's own PID namespace: a handful of
    # small pids (init, the scanning process, its launcher), all visible in its /proc.
    assert 1 in found and len(found) < 20, found
    assert set(found) <= set(listed) | {max(found)}, (found, listed)


SHM_MAKE = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
key, size = int(sys.argv[1]), int(sys.argv[2])
shmid = libc.shmget(key, ctypes.c_size_t(size), 0o1000 | 0o600)  # IPC_CREAT
assert shmid >= 0, ctypes.get_errno()
libc.shmat.restype = ctypes.c_void_p
addr = libc.shmat(shmid, None, 0)
ctypes.memmove(addr, b"secret-of-a", 11)
class Msg(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 32)]
q = libc.msgget(key, 0o1000 | 0o600)
assert q >= 0, ctypes.get_errno()
m = Msg(1, b"message-of-a")
assert libc.msgsnd(q, ctypes.byref(m), 32, 0) == 0, ctypes.get_errno()
print(shmid, q)
"""

SHM_STEAL = r"""
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
key, shmid, qid = (int(a) for a in sys.argv[1:4])
def err(ret):
    return "OK" if ret >= 0 else errno.errorcode[ctypes.get_errno()]
print("shmget", err(libc.shmget(key, 0, 0)))
libc.shmat.restype = ctypes.c_void_p
addr = libc.shmat(shmid, None, 0)
print("shmat", "OK" if addr not in (None, ctypes.c_void_p(-1).value) else errno.errorcode[ctypes.get_errno()])
print("msgget", err(libc.msgget(key, 0)))
buf = ctypes.create_string_buffer(64)
print("msgrcv", err(libc.msgrcv(qid, buf, 32, 0, 0o4000)))  # IPC_NOWAIT
"""


def test_sysv_ipc_is_not_shared_between_sandboxes_or_with_the_host(two):
    gw, _ = two
    key = 0x05AB0000 + os.getpid() % 0xFFFF
    shmid, qid = _py(gw, A, SHM_MAKE, str(key), str(1 << 20)).split()
    out = dict(line.split() for line in _py(gw, B, SHM_STEAL, str(key), shmid, qid).splitlines())
    # B lives in another IPC namespace: the key is unknown there; the ids name
    # nothing, or at most B's own objects, never A's.
    assert out["shmget"] == "ENOENT" and out["msgget"] == "ENOENT", out
    assert out["shmat"] in ("EINVAL", "EIDRM"), out
    assert out["msgrcv"] in ("EINVAL", "EIDRM"), out
    # The host's IPC namespace holds nothing of A's either.
    host_keys = Path("/proc/sysvipc/shm").read_text() + Path("/proc/sysvipc/msg").read_text()
    assert f"{key:>10}" not in host_keys
    # /proc/sysvipc in B shows neither A's objects nor the host's
    host = ctypes.CDLL(None, use_errno=True)
    host_key = 0x05AC0000 + os.getpid() % 0xFFFF
    host_id = host.shmget(host_key, ctypes.c_size_t(4096), 0o1000 | 0o600)
    assert host_id >= 0
    try:
        seen = gw.sx(B, "cat", "/proc/sysvipc/shm", "/proc/sysvipc/msg").stdout.decode()
        for k in (key, host_key):
            assert str(k) not in seen.split(), seen
    finally:
        host.shmctl(host_id, 0, None)  # IPC_RMID


def test_shared_memory_goes_away_with_its_sandbox(any_gateway, tmp_path):
    require_root()
    gateway = any_gateway
    name = "xs-shm"
    gateway.cli("sandbox", "delete", name, timeout=180)
    gateway.cli("sandbox", "create", "--name", name, "--detach", check=True, timeout=300)
    try:
        key = 0x05AD0000 + os.getpid() % 0xFFFF
        gateway.sx(name, "sh", "-c", "nohup sleep 3002.5 >/dev/null 2>&1 &")
        pid = wait_for(lambda: pids_running(["sleep", "3002.5"]), "the sleep")[0]
        ipc_ns = os.stat(f"/proc/{pid}/ns/ipc").st_ino
        assert ipc_ns != os.stat("/proc/self/ns/ipc").st_ino
        _py(gateway, name, SHM_MAKE, str(key), str(512 << 20))
        assert f"{key:>10}" not in Path("/proc/sysvipc/shm").read_text()
    finally:
        assert gateway.cli("sandbox", "delete", name, timeout=180).returncode == 0

    # The IPC namespace (and the 512 MiB segment in it) ends with the sandbox's last process.
    def holders():
        found = []
        for p in _host_pids():
            try:
                if os.stat(f"/proc/{p}/ns/ipc").st_ino == ipc_ns:
                    found.append(p)
            except OSError:
                pass
        return found

    assert holders() == []


def test_mountinfo_and_sysvipc_show_nothing_of_other_sandboxes_or_namespaces(two):
    gw, _ = two
    ids = {n: _records(gw)[n]["id"] for n in (A, B)}
    ctx_b = _ctx(gw, B)
    text = gw.sx(A, "cat", "/proc/self/mountinfo").stdout.decode()
    assert text, "empty mountinfo"
    assert " nsfs " not in text and "/run/netns" not in text, text
    for needle in (ids[B], ctx_b["netns"], ctx_b["extra"]["netns"]["proxy_netns"], _ctx(gw, A)["netns"]):
        assert needle not in text, needle


def test_mountinfo_does_not_show_the_gateway_state_dir(two):
    # Each bind's root is a path inside the sandbox's own file systems (workdir
    # image, /tmp, /dev/shm, /var/tmp and files tmpfs), and their host-side mounts
    # are dropped; so are the docker engine's file binds and the supervisor's runtime.
    gw, _ = two
    text = gw.sx(A, "cat", "/proc/self/mountinfo").stdout.decode()
    for path in [*host_paths(gw), "/sandboxes/"]:
        assert path not in text, (path, [line for line in text.splitlines() if path in line])
    by_point = {line.split()[4]: line.split()[3] for line in text.splitlines()}
    for point in ("/tmp", "/dev/shm", "/var/tmp"):
        assert by_point[point] == "/", text
    assert by_point["/etc/openshell-tls"] == "/tls" and by_point["/etc/hosts"] == "/hosts", text
    assert by_point["/etc/hostname"] == "/hostname", text
    assert not [p for p in by_point if p == "/.openshell" or p.startswith(("/.openshell/", "/run/openshell"))], text
    # Mounts the policy gives no way to reach are gone: no other runtime's containers,
    # no host mounts under /run, /mnt, /var/lib, /home, ...
    outside = ("/run", "/mnt", "/media", "/srv", "/var/lib", "/home", "/root", "/opt", "/boot")
    assert not [p for p in by_point if any(p == o or p.startswith(o + "/") for o in outside)], text
    assert by_point["/sandbox"] == "/", text  # docker too: the workdir's ext4 is bound into the container


def test_pid1_of_the_sandbox_names_no_host_path(two):
    # ps in the sandbox shows its init: once it showed the host venv's python and
    # the sandbox's host cgroup paths on its command line, and its mount table
    # (readable by anyone) was the host's: every sandbox's workdir and netns.
    gw, _ = two
    assert gw.sx(A, "cat", "/proc/1/cmdline").stdout == b"openshell-init\0"
    assert gw.sx(A, "cat", "/proc/1/comm").stdout == b"openshell-init\n"
    mounts = gw.sx(A, "cat", "/proc/1/mountinfo").stdout.decode()
    assert len(mounts.splitlines()) == 1 and " / / " in mounts and "tmpfs" in mounts, mounts
    ids = {n: _records(gw)[n]["id"] for n in (A, B)}
    for needle in (str(gw.state_dir), ids[A], ids[B], _ctx(gw, B)["netns"], "/run/netns"):
        assert needle not in mounts, needle


def test_two_execs_in_one_sandbox_see_each_other_and_hostname_is_the_sandbox_name(two):
    gw, _ = two
    marker = "3003.5"
    bg = subprocess.Popen([OPENSHELL, "sandbox", "exec", A, "--", "sleep", marker], env=gw.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids_running(["sleep", marker]), "the first exec")
        code = "import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try: print(open(f'/proc/{p}/cmdline','rb').read().replace(b'\\0', b' ').decode())\n  except OSError: pass"
        assert f"sleep {marker}" in _py(gw, A, code)
        assert f"sleep {marker}" not in _py(gw, B, code)
    finally:
        bg.kill()
        bg.wait()
    assert gw.sx(A, "hostname").stdout.decode().strip() == A
    assert gw.sx(B, "hostname").stdout.decode().strip() == B
    assert gw.sx(A, "cat", "/etc/hostname").stdout.decode() == A + "\n"  # its own, not the host's or the engine's
    assert os.uname().nodename not in (A, B)
