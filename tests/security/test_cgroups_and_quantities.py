"""The quantity parser (``openshell.resources``) and the cgroups module: v1 against
this machine's real hierarchy (when it is v1), v2 against a fake tree of files in
a temporary directory (the kernel's cgroup2 is not writable here), and v2
detection from a fake mountinfo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from openshell import resources as r
from openshell.supervisor import cgroups

# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512Mi", 512 * 2**20), ("512M", 512_000_000), ("1.5Gi", 3 * 2**29), ("2Gi", 2**31), ("1073741824", 2**30), ("100k", 100_000), (".5Gi", 2**29)],
)
def test_parse_bytes_accepts_kubernetes_quantities(text, expected):
    assert r.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "512X", "512 Mi", "-1Gi", "1e9", "0x10", "Mi", "1.2.3Gi", "512mi"])
def test_parse_bytes_rejects_garbage(text):
    with pytest.raises(r.QuantityError, match="is not a size"):
        r.parse_bytes(text)


def test_parse_bytes_bounds():
    with pytest.raises(r.QuantityError, match="too small"):
        r.parse_bytes("1Mi", minimum=r.MIN_MEMORY)
    with pytest.raises(r.QuantityError, match="too large"):
        r.parse_bytes("2000Pi")


@pytest.mark.parametrize(("text", "milli"), [("1.5", 1500), ("0.5", 500), ("2", 2000), ("500m", 500), (".25", 250), (1.5, 1500), (2, 2000)])
def test_parse_cpu(text, milli):
    assert r.parse_cpu(text) == milli


@pytest.mark.parametrize("text", ["fast", "1.2345", "0", "0.001", "5m", "-1", "1e3", "2000", True, ""])
def test_parse_cpu_rejects(text):
    with pytest.raises(r.QuantityError):
        r.parse_cpu(text)


def test_validate_and_defaults():
    assert r.validate({"limits": {"cpu": "1.5", "memory": "512Mi"}, "requests": {"cpu": "1"}}) == {"limits": {"cpu": "1.5", "memory": "512Mi"}}
    # a Struct from the wire carries numbers as floats
    assert r.validate({"limits": {"cpu": 2.0, "pids": 100.0}}) == {"limits": {"cpu": "2", "pids": "100"}}
    assert r.validate(None) == {} and r.validate({}) == {}
    limits = r.limits_for({"limits": {"memory": "1Gi"}})
    assert limits == r.Limits(cpu_milli=None, memory=2**30, pids=2048, tmp=2**30, disk=10 * 2**30)
    assert r.limits_for({}).memory == 8 * 2**30
    assert "cpu=unlimited memory=1Gi pids=2048 tmp=1Gi disk=10Gi" == limits.describe()


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"limits": {"gpu": "1"}}, "resources.limits.gpu: unknown resource"),
        ({"limits": {"memory": "lots"}}, "resources.limits.memory: memory 'lots' is not a size"),
        ({"claims": {}}, "resources.claims: unknown section"),
        ({"limits": {"pids": "8"}}, "resources.limits.pids"),
        ({"limits": {"disk": "1Mi"}}, "resources.limits.disk: disk '1Mi' is too small; the minimum is 16Mi"),
        ({"limits": {"disk": "9Ti"}}, "resources.limits.disk: disk '9Ti' is too large; the maximum is 8Ti"),
        ({"limits": ["cpu"]}, "resources.limits must be a mapping"),
    ],
)
def test_validate_names_the_bad_key(resources, message):
    with pytest.raises(r.QuantityError) as info:
        r.validate(resources)
    assert message in str(info.value)


# --------------------------------------------------------------------------- cgroups v2 (fake tree)


def _fake_v2(tmp_path):
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"25 1 0:23 / / rw,relatime - ext4 /dev/vda rw\n35 25 0:30 / {root} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    proc_cgroup = tmp_path / "proc_cgroup"
    proc_cgroup.write_text("0::/system.slice/openshell.service\n")
    return root, str(mountinfo), str(proc_cgroup)


def test_v2_detected_from_mountinfo(tmp_path):
    root, mountinfo, proc_cgroup = _fake_v2(tmp_path)
    h = cgroups.detect(mountinfo, proc_cgroup)
    assert h == cgroups.Hierarchy(2, {"unified": str(root / "openshell")}, (str(root),))


def test_v2_files_written_in_fake_tree(tmp_path):
    root, mountinfo, proc_cgroup = _fake_v2(tmp_path)
    h = cgroups.detect(mountinfo, proc_cgroup)
    # The kernel would make openshell/cgroup.controllers and memory.swap.max on mkdir.
    (root / "openshell" / "sbx").mkdir(parents=True)
    (root / "openshell" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "openshell" / "sbx" / "memory.swap.max").write_text("max\n")
    cg = cgroups.create("sbx", h)
    assert cg.version == 2 and cg.procs_files() == [str(root / "openshell" / "sbx" / "cgroup.procs")]
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (root / "openshell" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    cg.set_limits(memory=512 * 2**20, pids=2048, cpu_milli=1500)
    d = root / "openshell" / "sbx"
    assert (d / "memory.max").read_text() == str(512 * 2**20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "2048"
    assert (d / "cpu.max").read_text() == "150000 100000"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
    (d / "pids.events").write_text("max 13\n")
    assert cg.events() == cgroups.Events(oom_kills=2, pids_max=13)
    assert cg.activity() == (-1, -1)  # the kernel's files are missing in the fake tree: unknown
    (d / "memory.current").write_text("1048576\n")
    (d / "pids.current").write_text("3\n")
    assert cg.activity() == (1048576, 3)
    cg.save(str(tmp_path))
    assert cgroups.Cgroup.load(str(tmp_path)) == cg


def test_v2_unlimited_writes_nothing(tmp_path):
    root, mountinfo, proc_cgroup = _fake_v2(tmp_path)
    (root / "openshell").mkdir()
    (root / "openshell" / "cgroup.controllers").write_text("memory pids\n")
    cg = cgroups.create("sbx", cgroups.detect(mountinfo, proc_cgroup))
    cg.set_limits(memory=None, pids=None, cpu_milli=None)
    assert os.listdir(root / "openshell" / "sbx") == []


def test_no_usable_hierarchy_fails_closed(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("25 1 0:23 / / rw,relatime - ext4 /dev/vda rw\n")
    proc_cgroup = tmp_path / "proc_cgroup"
    proc_cgroup.write_text("0::/\n")
    with pytest.raises(cgroups.CgroupError, match="memory and pids"):
        cgroups.detect(str(mountinfo), str(proc_cgroup))


def test_v1_detected_nested_under_own_cgroup(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    proc_cgroup = tmp_path / "proc_cgroup"
    proc_cgroup.write_text("4:memory:/jobs/42\n3:pids:/\n2:cpu,cpuacct:/\n0::/\n")
    h = cgroups.detect(str(mountinfo), str(proc_cgroup))
    assert h.version == 1
    assert h.parents == {
        "memory": "/sys/fs/cgroup/memory/jobs/42/openshell",
        "pids": "/sys/fs/cgroup/pids/openshell",
        "cpu": "/sys/fs/cgroup/cpu,cpuacct/openshell",
    }


def test_bad_sandbox_id_is_refused():
    with pytest.raises(cgroups.CgroupError):
        cgroups.create("../escape", cgroups.Hierarchy(2, {"unified": "/nonexistent"}))


# --------------------------------------------------------------------------- the real hierarchy


@pytest.fixture
def real_cgroup():
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups)")
    cg = cgroups.create(f"unit-{os.getpid()}")
    yield cg
    cg.remove()
    assert not any(os.path.exists(p) for p in cg.paths())


def test_real_cgroup_limits_a_joined_process(real_cgroup):
    """On this machine's hierarchy (v1 here, v2 where the machine has it): a process
    that joined is limited in forks and memory, and the counters say so."""
    real_cgroup.set_limits(memory=64 * 2**20, pids=20, cpu_milli=500)
    code = f"""
import os, time
from openshell.supervisor import cgroups
cgroups.join({real_cgroup.procs_files()!r})
n = 0
try:
    for _ in range(100):
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
except OSError as exc:
    print("forks", n, exc.errno, flush=True)
b = bytearray(200 * 2**20)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -9, p.stderr  # OOM-killed
    words = p.stdout.split()
    assert words[0] == "forks" and int(words[1]) < 20 and words[2] == "11"
    ev = real_cgroup.events()
    assert ev.oom_kills >= 1 and ev.pids_max >= 1


def test_real_cgroup_activity_moves_with_a_process_and_its_memory(real_cgroup):
    """What the supervisor's housekeeping takes as "the sandbox did something": the
    memory charge and the process count of the real cgroup."""
    idle = real_cgroup.activity()
    assert idle[0] >= 0 and idle[1] == 0
    code = f"""
import sys
from openshell.supervisor import cgroups
cgroups.join({real_cgroup.procs_files()!r})
b = bytearray(32 * 2**20)
print("in", flush=True)
sys.stdin.readline()
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "in\n"
        busy = real_cgroup.activity()
        assert busy[1] >= 1 and busy[0] >= idle[0] + 16 * 2**20
    finally:
        p.communicate("\n", timeout=30)
    assert real_cgroup.activity()[1] == 0


def test_own_cgroup_of_a_container_v1(tmp_path):
    """In a docker container (cgroup v1, host cgroup namespace) each controller's
    mount root is the container's cgroup: its own cgroup is the mount point."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 25 0:26 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n31 25 0:27 /docker/abc /sys/fs/cgroup/pids ro - cgroup cgroup rw,pids\n"
    )
    proc_cgroup = tmp_path / "proc_cgroup"
    proc_cgroup.write_text("4:memory:/docker/abc\n3:pids:/docker/abc\n0::/\n")
    cg = cgroups.own(str(mountinfo), str(proc_cgroup))
    assert cg == cgroups.Cgroup(1, {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"})


def test_own_cgroup_v2_reads_the_counters(tmp_path):
    root, mountinfo, proc_cgroup = _fake_v2(tmp_path)
    own = root / "system.slice" / "openshell.service"
    own.mkdir(parents=True)
    (own / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (own / "pids.events").write_text("max 5\n")
    cg = cgroups.own(mountinfo, proc_cgroup)
    assert cg == cgroups.Cgroup(2, {"unified": str(own)})
    assert cg.events() == cgroups.Events(oom_kills=1, pids_max=5)


def test_the_hierarchy_is_read_from_the_mount_table_once_per_process(monkeypatch):
    # The host's mount table grows by ~7 lines per sandbox running and reading it
    # costs ~4 µs a line: a start (and the fork server, for all it forks) reads it once.
    calls = []
    found = cgroups.Hierarchy(2, {"unified": "/nowhere/openshell"}, ("/nowhere",))

    def fake_detect():
        calls.append(1)
        if len(calls) == 1:
            raise cgroups.CgroupError("no cgroup hierarchy offers the memory controller")
        return found

    cgroups.detect_once.cache_clear()
    monkeypatch.setattr(cgroups, "detect", fake_detect)
    with pytest.raises(cgroups.CgroupError):
        cgroups.detect_once()  # a failure is not kept: the next start tries again
    assert cgroups.detect_once() is found
    assert cgroups.detect_once() is found
    assert len(calls) == 2
    cgroups.detect_once.cache_clear()  # the fake answer must not outlive the test
