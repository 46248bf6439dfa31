"""The sandbox's workdir on a file system of its own: a sparse ext4 image, loop-mounted
(``openshell.supervisor.mounts``), with real mkfs, loop devices and mounts."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from openshell import resources
from openshell.supervisor import cleanup, mounts


@pytest.fixture
def state(launch_ids: tuple[int, int]) -> Iterator[Path]:
    """A sandbox state directory; whatever a test mounted in it is removed after."""
    d = Path(tempfile.mkdtemp(prefix="osb-workdir-"))
    yield d
    cleanup.remove_limits(d)
    shutil.rmtree(d, ignore_errors=True)


def _loops(image: Path) -> list[str]:
    """Loop devices whose backing file is ``image`` (read from sysfs, not through the module)."""
    found = []
    for name in os.listdir("/sys/block"):
        try:
            backing = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
        except OSError:
            continue
        if backing.removesuffix(" (deleted)") == str(image):
            found.append(name)
    return found


def test_workdir_is_a_sized_ext4_owned_by_the_sandbox_user(state, launch_ids):
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    image = state / mounts.WORKDIR_IMAGE
    assert os.path.ismount(dirs.workdir)
    st = os.stat(dirs.workdir)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750)
    assert os.listdir(dirs.workdir) == []  # no lost+found for the sandbox to trip over
    fs = os.statvfs(dirs.workdir)
    assert 24 * 2**20 < fs.f_blocks * fs.f_frsize <= 32 * 2**20
    assert image.stat().st_size == 32 * 2**20
    assert mounts.full_reason(dirs.workdir, "/sandbox", "32Mi", slack=mounts.workdir_slack(32 * 2**20)) == ""
    assert image.stat().st_blocks * 512 < 16 * 2**20  # sparse: the host's disk holds only what is used
    # hosts and tls live on a tmpfs of their own, not in the state directory's file system
    assert os.path.ismount(state / mounts.FILES_DIR)
    assert Path(dirs.hosts).parent == Path(dirs.tls).parent == state / mounts.FILES_DIR
    assert _loops(image)
    # /tmp, /dev/shm and /var/tmp: a sticky 1777 tmpfs each, of the tmp size
    assert [target for _, target in dirs.scratch()] == ["/tmp", "/dev/shm", "/var/tmp"]
    for path, _ in dirs.scratch():
        assert os.path.ismount(path), path
        assert os.stat(path).st_mode & 0o7777 == 0o1777
        fs = os.statvfs(path)
        assert fs.f_blocks * fs.f_frsize == 2**20, path


def test_writing_past_the_size_fails_with_enospc_and_the_host_disk_does_not_fill(state, launch_ids):
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=16 * 2**20)
    with pytest.raises(OSError) as info:
        with open(os.path.join(dirs.workdir, "big"), "wb") as f:
            for _ in range(32):
                f.write(bytes(2**20))
                f.flush()
                os.fsync(f.fileno())
    assert info.value.errno == errno.ENOSPC
    # what the supervisor's limit check reports as a full workdir
    why = mounts.full_reason(dirs.workdir, "/sandbox", "16Mi", slack=mounts.workdir_slack(16 * 2**20))
    assert why == "/sandbox is full (16Mi): writes fail with ENOSPC"
    assert (state / mounts.WORKDIR_IMAGE).stat().st_blocks * 512 <= 16 * 2**20


def test_a_workdir_out_of_inodes_is_named_so_not_full(state, launch_ids):
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=16 * 2**20)
    slack = mounts.workdir_slack(16 * 2**20)
    os.mkdir(os.path.join(dirs.workdir, "f"))
    n = 0
    with pytest.raises(OSError) as info:
        while True:
            open(os.path.join(dirs.workdir, "f", str(n)), "w").close()
            n += 1
    assert info.value.errno == errno.ENOSPC and n > 100
    why = mounts.full_reason(dirs.workdir, "/sandbox", "16Mi", slack=slack)
    files = os.statvfs(dirs.workdir).f_files
    assert why == f"/sandbox is out of inodes ({files:,} files and directories in 16Mi): creating files fails with ENOSPC"
    shutil.rmtree(os.path.join(dirs.workdir, "f"))
    assert mounts.full_reason(dirs.workdir, "/sandbox", "16Mi", slack=slack) == ""


def test_data_survives_an_unmount_and_a_second_prepare(state, launch_ids):
    # What a supervisor restart (or a later stop/start) does: the image is kept, not remade.
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    Path(dirs.workdir, "kept.txt").write_text("still here\n")
    cleanup.remove_limits(state)
    assert not os.path.ismount(dirs.workdir)
    assert not _loops(state / mounts.WORKDIR_IMAGE)
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    assert Path(dirs.workdir, "kept.txt").read_text() == "still here\n"


def test_remove_limits_after_a_crash_unmounts_everything_and_detaches_the_loop_device(state, launch_ids):
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    image = state / mounts.WORKDIR_IMAGE
    # A loop device left without a mount (a crash between losetup and mount) goes too.
    extra = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert len(_loops(image)) == 2
        cleanup.remove_limits(state)
        for path in (dirs.workdir, dirs.tmp, dirs.shm, dirs.var_tmp, state / mounts.FILES_DIR):
            assert not os.path.ismount(path), path
        assert not _loops(image)
    finally:
        subprocess.run(["losetup", "-d", extra], capture_output=True)


def test_a_new_image_is_mounted_without_mount8_and_its_loop_device_goes_with_the_mount(state, launch_ids, monkeypatch):
    # mount(8) -o loop scans every loop device on the host (O(sandboxes running));
    # an image this start made cannot be attached anywhere, so it is attached directly.
    uid, gid = launch_ids
    real_run = subprocess.run

    def no_mount8(argv, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert argv[0] != "mount", argv
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(mounts.subprocess, "run", no_mount8)
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    image = state / mounts.WORKDIR_IMAGE
    [loop] = _loops(image)
    assert Path(f"/sys/block/{loop}/loop/autoclear").read_text().strip() == "1"
    with open("/proc/self/mountinfo") as f:
        [line] = [ln.split() for ln in f if ln.split()[4] == dirs.workdir]
    sep = line.index("-")
    assert line[sep + 1 : sep + 3] == ["ext4", f"/dev/{loop}"]
    assert {"nosuid", "nodev", "noatime"} <= set(line[5].split(","))
    Path(dirs.workdir, "f").write_text("x")
    mounts.unmount_tmp(dirs.workdir)
    assert not _loops(image)  # released with the mount (autoclear), no scan needed


def test_racing_starts_each_get_a_loop_device_of_their_own(launch_ids, tmp_path):
    # 100 sandboxes created at once: LOOP_CTL_GET_FREE gives racers the same number.
    import threading

    uid, gid = launch_ids
    states = [tmp_path / f"s{i}" for i in range(12)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(states))

    def start(d: Path) -> None:
        try:
            d.mkdir()
            made = mounts.make_workdir_image(str(d / mounts.WORKDIR_IMAGE), 16 * 2**20, uid, gid, str(tmp_path / "tpl"))
            barrier.wait()
            mounts.mount_workdir(str(d / mounts.WORKDIR_IMAGE), str(d / "workdir"), uid, gid, fresh=made)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(d,)) for d in states]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        loops = [_loops(d / mounts.WORKDIR_IMAGE) for d in states]
        assert all(len(found) == 1 for found in loops), loops
        assert len({found[0] for found in loops}) == len(states)
        for i, d in enumerate(states):
            Path(d / "workdir" / "who").write_text(str(i))
        assert [Path(d / "workdir" / "who").read_text() for d in states] == [str(i) for i in range(len(states))]
    finally:
        for d in states:
            mounts.unmount_workdir(str(d / "workdir"), str(d / mounts.WORKDIR_IMAGE))


def test_an_older_image_still_attached_reuses_its_loop_device(state, launch_ids):
    # Two file system instances on one image would corrupt it: an image this start did
    # not make may still be backed by a loop device (a process kept the old mount
    # alive), so it goes through mount(8), which reuses that device.
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    image = state / mounts.WORKDIR_IMAGE
    Path(dirs.workdir, "kept.txt").write_text("one\n")
    held = os.open(dirs.workdir, os.O_RDONLY | os.O_DIRECTORY)  # keeps the file system busy
    try:
        os.sync()
        subprocess.run(["umount", "-l", dirs.workdir], check=True)
        [loop] = _loops(image)
        dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
        assert _loops(image) == [loop]
        assert Path(dirs.workdir, "kept.txt").read_text() == "one\n"
    finally:
        os.close(held)


def test_keep_workdir_copies_the_files_out_and_drops_the_image(state, launch_ids):
    uid, gid = launch_ids
    dirs = mounts.prepare_sandbox_dirs(str(state), uid, gid, tmp_size=2**20, disk_size=32 * 2**20)
    Path(dirs.workdir, "sub").mkdir()
    Path(dirs.workdir, "sub", "result.txt").write_text("kept\n")
    os.chown(Path(dirs.workdir, "sub", "result.txt"), uid, gid)
    cleanup.cleanup_sandbox("x", state, keep_workdir=True)
    assert sorted(p.name for p in state.iterdir()) == ["workdir"]
    assert not os.path.ismount(state / "workdir")
    kept = state / "workdir" / "sub" / "result.txt"
    assert kept.read_text() == "kept\n" and kept.stat().st_uid == uid


def test_workdirs_copied_from_one_template_are_separate_and_leave_it_untouched(launch_ids, tmp_path):
    """The local driver keeps empty workdir file systems beside the sandboxes and copies them (no mkfs per start)."""
    uid, gid = launch_ids
    templates = tmp_path / "templates"
    sandboxes = []
    try:
        for name in ("a", "b"):
            d = tmp_path / name
            dirs = mounts.prepare_sandbox_dirs(str(d), uid, gid, tmp_size=2**20, disk_size=32 * 2**20, template_dir=str(templates))
            sandboxes.append((d, dirs))
            st = os.stat(dirs.workdir)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750)
            assert os.listdir(dirs.workdir) == []
            fs = os.statvfs(dirs.workdir)
            assert 24 * 2**20 < fs.f_blocks * fs.f_frsize <= 32 * 2**20
            image = d / mounts.WORKDIR_IMAGE
            assert image.stat().st_size == 32 * 2**20 and image.stat().st_blocks * 512 < 16 * 2**20  # still sparse
            assert _loops(image)
        (template,) = templates.iterdir()
        assert template.name == f"workdir2-{32 * 2**20}-{uid}-{gid}.ext4"
        assert (templates.stat().st_mode & 0o777, template.stat().st_mode & 0o777) == (0o700, 0o600)
        before = template.read_bytes()
        Path(sandboxes[0][1].workdir, "only-in-a").write_text("a\n")
        os.sync()
        assert os.listdir(sandboxes[1][1].workdir) == []
        assert template.read_bytes() == before
    finally:
        for d, _ in sandboxes:
            cleanup.remove_limits(d)


def test_a_new_workdir_copies_little_data_and_old_templates_go(launch_ids, tmp_path):
    """A start copies (and the host writes back) the image's data: no resize reserve, ~170 KiB for 2Gi."""
    uid, gid = launch_ids
    templates = tmp_path / "templates"
    templates.mkdir(mode=0o700)
    (templates / f"workdir-{2**31}-{uid}-{gid}.ext4").write_bytes(b"an older layout")
    image = tmp_path / mounts.WORKDIR_IMAGE
    assert mounts.make_workdir_image(str(image), 2**31, uid, gid, str(templates))
    assert image.stat().st_size == 2**31 and image.stat().st_blocks * 512 < 512 * 2**10
    assert [p.name for p in templates.iterdir()] == [f"workdir2-{2**31}-{uid}-{gid}.ext4"]
    features = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    assert "resize_inode" not in features and "has_journal" in features


def test_a_copy_left_half_made_by_a_crash_is_replaced(state, launch_ids, tmp_path):
    (state / f"{mounts.WORKDIR_IMAGE}.new").write_bytes(b"half a copy")
    dirs = mounts.prepare_sandbox_dirs(str(state), *launch_ids, tmp_size=2**20, disk_size=32 * 2**20, template_dir=str(tmp_path / "templates"))
    assert os.path.ismount(dirs.workdir) and not (state / f"{mounts.WORKDIR_IMAGE}.new").exists()


def test_a_damaged_template_is_made_again(launch_ids, tmp_path):
    uid, gid = launch_ids
    templates = tmp_path / "templates"
    template = Path(mounts.workdir_template(str(templates), 32 * 2**20, uid, gid) or "")
    template.write_bytes(b"")  # truncated (by hand, or a full disk)
    d = tmp_path / "s"
    try:
        dirs = mounts.prepare_sandbox_dirs(str(d), uid, gid, tmp_size=2**20, disk_size=32 * 2**20, template_dir=str(templates))
        assert os.path.ismount(dirs.workdir)
        assert template.stat().st_size == 32 * 2**20
    finally:
        cleanup.remove_limits(d)


def test_template_count_is_bounded_then_mkfs_is_used(launch_ids, tmp_path, monkeypatch):
    uid, gid = launch_ids
    templates = tmp_path / "templates"
    monkeypatch.setattr(mounts, "MAX_TEMPLATES", 1)
    made = []
    try:
        for i, size in enumerate((32 * 2**20, 40 * 2**20)):
            d = tmp_path / f"s{i}"
            made.append(d)
            dirs = mounts.prepare_sandbox_dirs(str(d), uid, gid, tmp_size=2**20, disk_size=size, template_dir=str(templates))
            fs = os.statvfs(dirs.workdir)
            assert size - 8 * 2**20 < fs.f_blocks * fs.f_frsize <= size
        assert [p.name for p in templates.iterdir()] == [f"workdir2-{32 * 2**20}-{uid}-{gid}.ext4"]
    finally:
        for d in made:
            cleanup.remove_limits(d)


def test_missing_mkfs_fails_closed_naming_the_package(state, launch_ids, monkeypatch):
    monkeypatch.setattr(mounts, "_MKFS", "mkfs.no-such-fs")
    with pytest.raises(mounts.WorkdirError, match=r"apt install e2fsprogs"):
        mounts.prepare_sandbox_dirs(str(state), *launch_ids, tmp_size=2**20, disk_size=32 * 2**20)
    assert not os.path.ismount(state / "workdir")
    assert not (state / mounts.WORKDIR_IMAGE).exists()


def test_missing_loop_devices_fail_closed_naming_the_module(state, launch_ids, monkeypatch):
    monkeypatch.setattr(mounts, "_LOOP_CONTROL", str(state / "no-loop-control"))
    with pytest.raises(mounts.WorkdirError, match=r"modprobe loop"):
        mounts.prepare_sandbox_dirs(str(state), *launch_ids, tmp_size=2**20, disk_size=32 * 2**20)
    assert not os.path.ismount(state / "workdir")


@pytest.mark.parametrize("value, bytes_", [("10Gi", 10 * 2**30), ("16Mi", 16 * 2**20), ("100M", 100_000_000 // 4096 * 4096), (2**30, 2**30)])
def test_disk_quantities(value, bytes_):
    assert resources.parse_disk(value) == bytes_
    assert resources.limits_for({"limits": {"disk": value}}).disk == bytes_


@pytest.mark.parametrize("value, needle", [("lots", "not a size"), ("1Mi", "too small"), ("9Ti", "too large"), ("-1Gi", "not a size")])
def test_bad_disk_quantities_name_the_key(value, needle):
    with pytest.raises(resources.QuantityError, match=needle):
        resources.validate({"limits": {"disk": value}})
    with pytest.raises(resources.QuantityError, match=r"resources\.limits\.disk"):
        resources.validate({"limits": {"disk": value}})


def test_default_disk_is_10gi():
    assert resources.limits_for(None).disk == 10 * 2**30
