"""A docker sandbox's ``disk`` limit: its workdir on a size-bounded ext4 file system.

The container's writable layer has no size limit (overlay2 only bounds it on
xfs with project quotas, which the private engine's data root is not), so the
driver makes the workdir on the host, as the ``local`` driver's supervisor does::

    <state>/sandboxes/<id>/workdir.ext4   a sparse ext4 image of the sandbox's ``disk`` size
    <state>/sandboxes/<id>/workdir        its loop mount (host mount namespace)

and binds the mount into the container on the supervisor's workdir
(``/var/lib/openshell/state/workdir``), which the supervisor shows as
``/sandbox``. A write past the limit fails with ``ENOSPC`` in the sandbox
instead of filling the host's disk. The image lives as long as the sandbox:
kept across stop/start and gateway restarts, unmounted and removed with delete.

All functions need root (``mount``) and the host's ``mkfs.ext4`` (e2fsprogs)
and loop devices.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

IMAGE = "workdir.ext4"
MOUNTPOINT = "workdir"
_MKFS = "mkfs.ext4"
_LOOP_CONTROL = "/dev/loop-control"


class DiskError(RuntimeError):
    """The workdir's file system could not be made or mounted (the message names the fix)."""


def _mkfs() -> str:
    found = shutil.which(_MKFS) or next((p for p in (f"/usr/sbin/{_MKFS}", f"/sbin/{_MKFS}") if os.path.exists(p)), None)
    if found is None:
        raise DiskError(f"{_MKFS} not found: a docker sandbox's disk limit needs it on the gateway host; install e2fsprogs (apt-get install e2fsprogs)")
    return found


def _one_line(p: subprocess.CompletedProcess) -> str:
    return " ".join((p.stderr or p.stdout or "").split())[:300]


def make_image(image: Path, size: int) -> bool:
    """A sparse ``size``-byte file holding an empty ext4 (root 0:0; the supervisor
    hands the workdir to the sandbox user). An existing image is kept (its size is
    the one it was made with). Made under a temporary name, then renamed.

    :returns: True when made now.
    :raises DiskError: ``mkfs.ext4`` is missing or failed, or ``size`` is more than the
        host file system has free.
    """
    if image.exists():
        return False
    # Sparse, it fills as the sandbox writes: a limit beyond the host's free space would
    # let the sandbox fill the host's disk.
    st = os.statvfs(image.parent)
    free = st.f_bavail * st.f_frsize
    if size > free:
        raise DiskError(
            f"the workdir size limit ({size / 2**30:.1f} GiB) is more than the {free / 2**30:.1f} GiB free on the host's file system "
            f"under {image.parent}: create the sandbox with a smaller --disk (limits.disk)"
        )
    mkfs = _mkfs()
    partial = image.with_name(image.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    # -m 0: no blocks reserved for root; lazy init: seconds → milliseconds, and the file stays sparse.
    argv = [mkfs, "-q", "-F", "-m", "0", "-L", "openshell", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(partial)]
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if p.returncode != 0:
        partial.unlink(missing_ok=True)
        raise DiskError(f"{_MKFS} failed for the sandbox's workdir: {_one_line(p)}")
    os.replace(partial, image)
    return True


def mount(image: Path, path: Path) -> None:
    """Loop-mount ``image`` on ``path`` (nosuid, nodev; the loop device is released
    on unmount). An existing mount is kept.

    :raises DiskError: no loop devices or the mount failed.
    """
    if os.path.ismount(path):
        return
    if not os.path.exists(_LOOP_CONTROL):
        raise DiskError(f"no loop devices ({_LOOP_CONTROL} is missing): a docker sandbox's disk limit needs one; load the loop module (modprobe loop)")
    path.mkdir(mode=0o700, exist_ok=True)
    # noinit_itable: no background zeroing of the lazily made inode tables (keeps the image sparse);
    # discard: space the sandbox frees goes back to the host.
    options = "loop,nosuid,nodev,noatime,noinit_itable,discard"
    p = subprocess.run(["mount", "-t", "ext4", "-o", options, str(image), str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if p.returncode != 0:
        reason = _one_line(p)
        hint = "; load the loop module (modprobe loop)" if "loop" in reason.lower() else ""
        raise DiskError(f"cannot mount the sandbox's workdir {image}: {reason}{hint}")
    lost = path / "lost+found"
    if lost.is_dir() and not any(lost.iterdir()):
        lost.rmdir()  # e2fsck makes it again when it needs one; the sandbox should not see it


def prepare(sandbox_dir: Path, size: int) -> Path:
    """Make (once) and mount the workdir file system of one sandbox.

    :returns: the host mount point to bind into the container.
    :raises DiskError: see :func:`make_image` and :func:`mount`.
    """
    image = sandbox_dir / IMAGE
    path = sandbox_dir / MOUNTPOINT
    make_image(image, size)
    mount(image, path)
    return path


def release(sandbox_dir: Path) -> None:
    """Unmount the workdir (lazily if busy) and remove its image. Idempotent."""
    path = sandbox_dir / MOUNTPOINT
    for _ in range(8):  # a mount can be stacked (two starts racing); unmount every layer
        if not os.path.ismount(path):
            break
        p = subprocess.run(["umount", str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if p.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    (sandbox_dir / IMAGE).unlink(missing_ok=True)
    (sandbox_dir / (IMAGE + ".new")).unlink(missing_ok=True)


__all__ = ["DiskError", "IMAGE", "MOUNTPOINT", "make_image", "mount", "prepare", "release"]
