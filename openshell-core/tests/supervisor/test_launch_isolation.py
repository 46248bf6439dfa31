"""What a process launched into a sandbox can and cannot do (isolation-checks.md I01–I05,
I12–I14, I16, I17), on the real kernel: Landlock, seccomp, user drop, mounts."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from openshell_plugin_landlock import LandlockLayer
from openshell_plugin_netns import NetnsLayer
from openshell_plugin_seccomp import SeccompLayer


@pytest.fixture(scope="module", autouse=True)
def _needs_landlock() -> None:
    # Truly-absent kernel feature only; CI has ABI 7.
    if not LandlockLayer().probe().ok:
        pytest.skip("kernel without Landlock")


def test_probes_report_kernel_support(launch_root) -> None:
    landlock = LandlockLayer().probe()
    assert landlock.ok and landlock.detail.startswith("Landlock ABI ")
    assert int(landlock.detail.split()[-1]) >= 1
    assert NetnsLayer().probe().ok
    seccomp = SeccompLayer().probe()
    assert seccomp.ok, seccomp.detail


def test_i01_runs_as_sandbox_user_without_caps_with_nnp_and_seccomp(launch_sandbox, launch_ids) -> None:
    res = launch_sandbox.run(["sh", "-c", "id -u; id -g; id -G; cat /proc/self/status"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    uid, gid, groups = int(lines[0]), int(lines[1]), lines[2].split()
    assert uid != 0 and (uid, gid) == launch_ids
    assert groups == [str(gid)]  # supplementary groups reset
    status = dict(line.split(":\t", 1) for line in lines[3:] if ":\t" in line)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, (key, status[key])
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def test_i02_setuid_zero_fails_with_eperm(launch_sandbox) -> None:
    out = launch_sandbox.py("import json, os\ntry:\n    os.setuid(0); r = 'ok'\nexcept OSError as e:\n    r = e.errno\nprint(json.dumps(r))")
    assert out == 1  # EPERM


PROBE_WRITE = """
import json, sys, errno
res = {}
for path in sys.argv[1:]:
    try:
        open(path, "w").close(); res[path] = "ok"
    except OSError as e:
        res[path] = errno.errorcode[e.errno]
with open("/etc/hostname") as f:
    res["read"] = f.read() != ""
print(json.dumps(res))
"""


def test_i03_read_only_paths_refuse_writes_but_read(launch_sandbox) -> None:
    out = launch_sandbox.py(PROBE_WRITE, "/etc/openshell-probe", "/usr/probe")
    assert out["/etc/openshell-probe"] in ("EACCES", "EPERM")
    assert out["/usr/probe"] in ("EACCES", "EPERM")
    assert out["read"] is True
    assert not os.path.exists("/etc/openshell-probe") and not os.path.exists("/usr/probe")


def test_i04_workdir_and_tmp_allow_create_rename_delete(launch_sandbox) -> None:
    code = r"""
import json, os
for base in ("/sandbox", "/tmp"):
    os.makedirs(f"{base}/sub", exist_ok=True)
    with open(f"{base}/a.txt", "w") as f:
        f.write("x")
    os.rename(f"{base}/a.txt", f"{base}/b.txt")
    os.rename(f"{base}/b.txt", f"{base}/sub/c.txt")   # into a sub-directory (REFER)
    os.unlink(f"{base}/sub/c.txt")
    os.rmdir(f"{base}/sub")
    with open(f"{base}/kept", "w") as f:
        f.write(base)
print(json.dumps("done"))
"""
    assert launch_sandbox.py(code) == "done"
    # The writes landed in the per-sandbox host directories, not the host's /tmp.
    with open(os.path.join(launch_sandbox.dirs.workdir, "kept")) as f:
        assert f.read() == "/sandbox"
    with open(os.path.join(launch_sandbox.dirs.tmp, "kept")) as f:
        assert f.read() == "/tmp"


LIST_DIRS = """
import json, os, sys, errno
res = {}
for path in sys.argv[1:]:
    try:
        os.listdir(path); res[path] = "ok"
    except OSError as e:
        res[path] = errno.errorcode[e.errno]
print(json.dumps(res))
"""


@pytest.fixture
def owned_outside_policy(launch_ids):
    """A directory the sandbox user owns, outside every policy path."""
    path = f"/opt/osb-owned-{uuid.uuid4().hex[:8]}"  # not /var/tmp: each sandbox has its own
    os.makedirs(path)
    os.chown(path, *launch_ids)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_i05_paths_outside_policy_cannot_be_listed(launch_sandbox, owned_outside_policy) -> None:
    paths = ["/root", "/home", "/opt", "/var/lib", owned_outside_policy]
    out = launch_sandbox.py(LIST_DIRS, *paths)
    for path in paths:
        if os.path.exists(path):
            assert out[path] == "EACCES", (path, out[path])
        else:
            assert out[path] != "ok", path
    # The owned directory is listable by the same user outside the sandbox: Landlock, not DAC, refuses.
    uid, gid = pwd.getpwnam("sandbox").pw_uid, pwd.getpwnam("sandbox").pw_gid
    plain = subprocess.run(["ls", owned_outside_policy], user=uid, group=gid, capture_output=True, check=False)
    assert plain.returncode == 0


SOCKETS = """
import json, socket, errno
res = {}
def try_socket(label, *args):
    try:
        socket.socket(*args).close(); res[label] = "ok"
    except OSError as e:
        res[label] = errno.errorcode[e.errno]
try_socket("packet", socket.AF_PACKET, socket.SOCK_RAW, 0)
try_socket("packet_dgram", socket.AF_PACKET, socket.SOCK_DGRAM, 0)
try_socket("vsock", 40, socket.SOCK_STREAM, 0)
try_socket("bluetooth", 31, socket.SOCK_RAW, 0)
try_socket("sock_diag", socket.AF_NETLINK, socket.SOCK_RAW, 4)   # NETLINK_SOCK_DIAG
try_socket("audit", socket.AF_NETLINK, socket.SOCK_RAW, 9)       # NETLINK_AUDIT
try_socket("route", socket.AF_NETLINK, socket.SOCK_RAW, 0)       # NETLINK_ROUTE
try_socket("route_cloexec", socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
try_socket("inet", socket.AF_INET, socket.SOCK_STREAM, 0)
try_socket("unix", socket.AF_UNIX, socket.SOCK_STREAM, 0)
print(json.dumps(res))
"""


def test_i12_socket_families_are_filtered(launch_sandbox) -> None:
    out = launch_sandbox.py(SOCKETS)
    for label in ("packet", "packet_dgram", "vsock", "bluetooth", "sock_diag", "audit"):
        assert out[label] == "EPERM", (label, out[label])
    for label in ("route", "route_cloexec", "inet", "unix"):
        assert out[label] == "ok", (label, out[label])


SYSCALLS = r"""
import ctypes, errno, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
res = {}
def check(label, ret):
    res[label] = "ok" if ret == 0 or (ret > 0 and label != "ptrace") else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    ctypes.set_errno(0)
check("ptrace", libc.ptrace(0, 0, None, None))                           # PTRACE_TRACEME
check("unshare_user", libc.unshare(0x10000000))                         # CLONE_NEWUSER
check("unshare_net", libc.unshare(0x40000000))
check("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
check("bpf", libc.syscall(321, 0, None, 0))                             # bpf(BPF_MAP_CREATE, NULL, 0)
check("memfd_create", libc.syscall(319, b"x", 0))
check("setns", libc.setns(0, 0))
check("keyctl", libc.syscall(250, 0, 0, 0, 0, 0))
check("io_uring_setup", libc.syscall(425, 1, None))
check("userfaultfd", libc.syscall(323, 0))
check("perf_event_open", libc.syscall(298, None, 0, -1, -1, 0))
check("clone_newns", libc.syscall(56, 0x00020000 | 17, None, None, None, None))   # clone(CLONE_NEWNS|SIGCHLD)
check("clone3", libc.syscall(435, None, 0))
check("tiocsti", libc.ioctl(0, 0x5412, b"x"))
try:
    os.memfd_create("x"); res["os.memfd_create"] = "ok"
except OSError as e:
    res["os.memfd_create"] = errno.errorcode[e.errno]
# clone3 answers ENOSYS so libc falls back to clone: ordinary children still work.
res["child"] = subprocess.run(["/bin/true"]).returncode
print(json.dumps(res))
"""


def test_i13_dangerous_syscalls_fail_with_eperm(launch_sandbox) -> None:
    out = launch_sandbox.py(SYSCALLS)
    for label in (
        "ptrace",
        "unshare_user",
        "unshare_net",
        "mount",
        "bpf",
        "memfd_create",
        "setns",
        "keyctl",
        "io_uring_setup",
        "userfaultfd",
        "perf_event_open",
        "clone_newns",
        "os.memfd_create",
    ):
        assert out[label] == "EPERM", (label, out[label])
    assert out["clone3"] == "ENOSYS"
    assert out["tiocsti"] == "EPERM"
    assert out["child"] == 0


def test_i14_cannot_signal_or_read_supervisor(launch_sandbox, launch_ids) -> None:
    # A process of the *same* uid outside the sandbox: only Landlock's signal
    # scope (ABI >= 6) stops the kill; the supervisor (root) is refused by DAC too.
    outsider = subprocess.Popen(["sleep", "60"], user=launch_ids[0], group=launch_ids[1])
    try:
        code = r"""
import errno, json, os, sys
res = {}
for label, pid in (("supervisor", int(sys.argv[1])), ("same_uid_outside", int(sys.argv[2]))):
    try:
        os.kill(pid, 0); res[label] = "ok"
    except OSError as e:
        res[label] = errno.errorcode[e.errno]
try:
    open(f"/proc/{sys.argv[1]}/environ", "rb").read(); res["environ"] = "ok"
except OSError as e:
    res["environ"] = errno.errorcode[e.errno]
print(json.dumps(res))
"""
        out = launch_sandbox.py(code, str(os.getpid()), str(outsider.pid))
    finally:
        outsider.kill()
        outsider.wait()
    assert out["supervisor"] == "EPERM"
    # ENOENT: the sandbox's private /proc (hidepid=invisible) does not even show it.
    assert out["environ"] in ("EACCES", "EPERM", "ENOENT")
    from openshell_plugin_landlock import abi_version

    if abi_version() >= 6:
        assert out["same_uid_outside"] == "EPERM"


def test_i16_core_dumps_disabled(launch_sandbox) -> None:
    res = launch_sandbox.run(["sh", "-c", "ulimit -Hc; ulimit -Sc"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "0"]


def test_i17_children_inherit_the_isolation(launch_sandbox) -> None:
    res = launch_sandbox.run(
        ["sh", "-c", "sh -c 'touch /etc/openshell-probe' ; echo rc=$?; sh -c 'grep -E \"^(Seccomp|NoNewPrivs|CapEff):\" /proc/self/status'"]
    )
    assert "rc=1" in res.stdout, res.stdout + res.stderr
    assert "Seccomp:\t2" in res.stdout and "NoNewPrivs:\t1" in res.stdout and "CapEff:\t0000000000000000" in res.stdout
    assert not os.path.exists("/etc/openshell-probe")


def test_mounts_hosts_tls_and_readonly(launch_factory) -> None:
    box = launch_factory(extra_hosts={"up.example.test": "10.199.7.2"})
    res = box.run(["sh", "-c", "cat /etc/hosts; test -d /etc/openshell-tls && echo tls-dir; echo x > /etc/hosts; echo rc=$?; pwd"])
    assert "10.199.7.2\tup.example.test" in res.stdout
    assert "127.0.0.1\tlocalhost" in res.stdout
    assert "tls-dir" in res.stdout
    assert "rc=0" not in res.stdout
    assert "Read-only file system" in res.stderr  # the bind is read-only (EROFS before Landlock's EACCES)
    assert res.stdout.strip().splitlines()[-1] == "/sandbox"
    # The host's /etc/hosts is untouched by the sandbox's private mount.
    with open("/etc/hosts") as f:
        assert "up.example.test" not in f.read()


@pytest.fixture
def many_host_mounts() -> Iterator[list[str]]:
    """12 tmpfs mounts, one with a mount on it, and a file bind, under a new /mnt dir."""
    base = f"/mnt/osb-many-{uuid.uuid4().hex[:8]}"
    points = [f"{base}/d{i}" for i in range(12)]
    try:
        os.makedirs(base)
        for point in points:
            os.makedirs(point)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "osb-test", point], check=True)
        points.append(f"{points[0]}/inner")
        os.makedirs(points[-1])
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "osb-test", points[-1]], check=True)
        points.append(f"{base}/file")
        open(points[-1], "w").close()
        subprocess.run(["mount", "--bind", "/etc/hostname", points[-1]], check=True)
        yield points
    finally:
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", base], capture_output=True)


def test_many_host_mounts_are_dropped_together_and_stay_on_the_host(launch_sandbox, many_host_mounts) -> None:
    # Directory mounts, nested ones and a file bind all leave the sandbox's view; the host keeps every one.
    seen = launch_sandbox.py(MOUNT_POINTS)
    assert not [p for p in seen if p.startswith("/mnt/")], seen
    assert "/proc" in seen and "/sandbox" in seen, seen
    with open("/proc/self/mountinfo") as f:
        host = [line.split()[4] for line in f]
    assert set(many_host_mounts) <= set(host)
    assert "openshell-drop" not in open("/proc/self/mountinfo").read()


GATHER = """
import json, sys
from openshell.supervisor import launcher, nsutil
calls, umount = [], nsutil.umount
nsutil.umount = lambda target, flags=0: (calls.append(target), umount(target, flags))
nsutil.unshare(nsutil.CLONE_NEWNS)
nsutil.mount("none", "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
launcher._drop_points(sys.argv[1:])
left = [line.split()[4] for line in open("/proc/self/mountinfo") if line.split()[4] in sys.argv[1:]]
print(json.dumps({"calls": calls, "left": left, "drop": "openshell-drop" in open("/proc/self/mountinfo").read()}))
"""


def test_many_mounts_are_dropped_with_one_unmount(many_host_mounts) -> None:
    # Each umount2 waits for an RCU grace period (~0.2 ms): with 300 sandboxes a launcher
    # dropped ~2,000 host-side mounts one by one (~0.3 s per start and per exec).
    out = subprocess.run([sys.executable, "-c", GATHER, *many_host_mounts], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"calls": ["/proc"], "left": [], "drop": False}


def test_private_proc_shows_only_the_sandbox_own_processes(launch_sandbox) -> None:
    code = r"""
import json, os
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps({"pids": pids, "me": os.getpid(), "init_visible": os.path.exists("/proc/1")}))
"""
    out = launch_sandbox.py(code)
    assert out["me"] in out["pids"]
    assert not out["init_visible"]
    assert os.getpid() not in out["pids"]


def test_concurrent_spawns_from_threads(launch_sandbox) -> None:
    # The supervisor is threaded: spawn() must be safe from many threads at once.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: launch_sandbox.run(["sh", "-c", f"echo {i}; id -u"]), range(16)))
    for i, res in enumerate(results):
        assert res.returncode == 0, res.stderr
        assert res.stdout.split()[0] == str(i) and res.stdout.split()[1] != "0"


MOUNT_POINTS = "import json\nprint(json.dumps([line.split()[4] for line in open('/proc/self/mountinfo')]))"


def test_host_mounts_outside_the_policy_are_not_in_the_sandbox(launch_sandbox) -> None:
    # A host mount the policy gives no way to reach (another runtime's container
    # shm, say) is dropped from the sandbox's namespace; one under a policy path stays.
    outside = f"/mnt/osb-other-{uuid.uuid4().hex[:8]}"
    inside = f"/usr/osb-kept-{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for point in (outside, inside):
            os.makedirs(point)
            made.append(point)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "osb-test", point], check=True)
        points = launch_sandbox.py(MOUNT_POINTS)
        assert outside not in points and not [p for p in points if p.startswith("/mnt/")], points
        assert inside in points, points  # /usr is in the policy: what is on it stays usable
        assert "/proc" in points and "/sandbox" in points and "/dev/shm" in points
    finally:
        for point in reversed(made):
            subprocess.run(["umount", "-l", point], capture_output=True)
            os.rmdir(point)
