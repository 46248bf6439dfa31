"""Each sandbox has its own ``/dev/shm`` and ``/var/tmp``, on both compute drivers.

All sandboxes run as one uid. A policy that grants ``read_write`` on ``/dev/shm``
or ``/var/tmp`` used to grant the host's own directories, so a file written there
by sandbox A could be read by sandbox B (and by anyone on the host). Each sandbox
now gets a size-bounded tmpfs of its own over both (like ``/tmp``); two sandboxes
with that policy run at once, A writes, B and the host must not see the file.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from conftest import write_policy  # noqa: E402 - tests/ is on sys.path (conftest)

pytestmark = pytest.mark.timeout(600)

A, B = "scratch-a", "scratch-b"
DIRS = ("/dev/shm", "/var/tmp", "/tmp")
POLICY = """\
version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /etc, /proc]
  read_write: [/sandbox, /tmp, /dev/shm, /var/tmp]
landlock: {compatibility: hard_requirement}
process: {run_as_user: sandbox, run_as_group: sandbox}
"""
MARKER = f"scratch-{uuid.uuid4().hex[:10]}"

# Prints, per directory: whether the file is there, and the file system's size in bytes.
PROBE = r"""
import json, os, sys
out = {}
for d in sys.argv[2:]:
    st = os.statvfs(d)
    out[d] = {"exists": os.path.exists(os.path.join(d, sys.argv[1])), "size": st.f_blocks * st.f_frsize}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def two(any_gateway, tmp_path_factory):
    gw = any_gateway
    policy = write_policy(tmp_path_factory.mktemp("scratch") / "policy.yaml", POLICY)
    for name in (A, B):
        gw.cli("sandbox", "delete", name)
        gw.cli("sandbox", "create", "--name", name, "--policy", policy, "--detach", check=True, timeout=300)
    yield gw
    for name in (A, B):
        gw.cli("sandbox", "delete", name, timeout=180)


def _probe(gw, sandbox: str) -> dict:
    p = gw.sx(sandbox, "python3", "-c", PROBE, MARKER, *DIRS, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_a_file_in_dev_shm_or_var_tmp_of_one_sandbox_is_not_in_another_nor_on_the_host(two):
    gw = two
    w = gw.sx(A, "sh", "-c", " && ".join(f"echo secret-of-a > {d}/{MARKER}" for d in DIRS))
    assert w.returncode == 0, w.stderr.decode()  # the policy grants them: writing works
    # Another session of A sees its files (one tmpfs per sandbox, not per session) ...
    assert all(v["exists"] for v in _probe(gw, A).values())
    # ... B does not, and neither does the host.
    seen = _probe(gw, B)
    assert not any(v["exists"] for v in seen.values()), seen
    for d in DIRS:
        assert not os.path.exists(os.path.join(d, MARKER)), d
    # B writing the same name does not touch A's file.
    assert gw.sx(B, "sh", "-c", f"echo b > /dev/shm/{MARKER} && echo b > /var/tmp/{MARKER}").returncode == 0
    assert gw.sx(A, "cat", f"/dev/shm/{MARKER}", f"/var/tmp/{MARKER}").stdout.decode() == "secret-of-a\n" * 2


def test_dev_shm_and_var_tmp_are_bounded_like_tmp(two):
    gw = two
    sizes = {d: v["size"] for d, v in _probe(gw, A).items()}
    assert sizes["/dev/shm"] == sizes["/var/tmp"] == sizes["/tmp"] == 2**30, sizes  # the default tmp limit
    mountinfo = gw.sx(A, "cat", "/proc/self/mountinfo").stdout.decode()
    fields = {line.split()[4]: line.split() for line in mountinfo.splitlines()}
    for d in ("/dev/shm", "/var/tmp"):
        line = fields[d]
        assert line[3] == "/" and line[line.index("-") + 1] == "tmpfs", line  # the root of a tmpfs of its own
        assert "nosuid" in line[5] and "nodev" in line[5], line
    assert str(gw.state_dir) not in mountinfo


def test_posix_shared_memory_is_not_shared_between_sandboxes(two):
    gw = two
    name = f"/{MARKER}-posix"
    make = (
        "import mmap, os, sys\n"
        "fd = os.open('/dev/shm' + sys.argv[1], os.O_CREAT | os.O_RDWR, 0o666)\n"
        "os.ftruncate(fd, 4096); m = mmap.mmap(fd, 4096); m[:11] = b'secret-of-a'; print('made')\n"
    )
    look = "import os, sys\nprint(os.path.exists('/dev/shm' + sys.argv[1]))\n"
    assert gw.sx(A, "python3", "-c", make, name).stdout.decode().strip() == "made"
    assert gw.sx(B, "python3", "-c", look, name).stdout.decode().strip() == "False"
    assert not os.path.exists("/dev/shm" + name)


def test_delete_removes_the_scratch_file_systems(any_gateway, tmp_path):
    gw = any_gateway
    if gw.driver == "docker":
        pytest.skip("docker: the tmpfs are mounted inside the container, which delete removes (test_docker_driver checks the container is gone)")
    name = "scratch-del"
    gw.cli("sandbox", "create", "--name", name, "--detach", check=True)
    sid = json.loads(gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout)["id"]
    d = gw.state_dir / "sandboxes" / sid
    assert all(os.path.ismount(d / sub) for sub in ("tmp", "shm", "var-tmp"))
    gw.cli("sandbox", "delete", name, check=True, timeout=120)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    assert not [p for p in points if p.startswith(str(d))]
    assert not d.exists()
