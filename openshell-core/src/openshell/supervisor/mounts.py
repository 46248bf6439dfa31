"""Per-sandbox host directories and the bind mounts that show them inside (DESIGN.md §4).

The ``local`` driver gives each sandbox, under its state directory::

    <state>/workdir.ext4  the workdir's file system (a sparse ext4 image of the
                          sandbox's ``disk`` size limit, kept across restarts)
    <state>/workdir       its loop mount, owned by the sandbox user, 0750 → /sandbox
    <state>/tmp           root-owned, 1777 (sticky)                       → /tmp
                          (a tmpfs of the sandbox's ``tmp`` size limit)
    <state>/shm           the same, a tmpfs of its own                    → /dev/shm
    <state>/var-tmp       the same, a tmpfs of its own                    → /var/tmp
    <state>/files/        a small tmpfs, regenerated at each start:
        hosts             localhost lines + extra hosts → /etc/hosts (read-only)
        hostname          the sandbox's host name → /etc/hostname (read-only)
        tls/              CA files written by the proxy → /etc/openshell-tls (read-only)

Every one of them is mounted in the supervisor's (the host's) mount namespace
and bound from there by the child launcher in its private mount namespace.
Each bind source sits on a file system of its own, so the root of each bind
in the sandbox's ``/proc/self/mountinfo`` is a path inside that file system
(``/``, ``/tls``), never a path under the gateway's state directory, and the
launcher drops the host-side mounts (every sandbox's) from the sandbox's view.
Without the size limits (the launcher's own tests) they are plain directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
)

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


@dataclass(frozen=True)
class Mount:
    """One bind mount the child launcher applies in the sandbox's mount namespace.

    :ivar source: host path (file or directory) as root sees it.
    :ivar target: path inside the sandbox; created as root (0755 dir / 0644 file) when missing.
    :ivar read_only: remount the bind read-only.
    """

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class SandboxDirs:
    """Host paths prepared by ``prepare_sandbox_dirs``."""

    root: str
    workdir: str
    tmp: str
    hosts: str
    tls: str
    shm: str
    var_tmp: str
    hostname: str

    def scratch(self) -> list[tuple[str, str]]:
        """``(host path, sandbox path)`` of the sandbox's own world-writable scratch
        directories: ``/tmp``, ``/dev/shm`` and ``/var/tmp``. The host's own
        ``/dev/shm`` and ``/var/tmp`` are never shown: a policy granting them would
        otherwise let every sandbox (one uid) and the host swap files there."""
        return [(self.tmp, "/tmp"), (self.shm, "/dev/shm"), (self.var_tmp, "/var/tmp")]

    def mounts(self) -> list[Mount]:
        """Return the standard bind mounts: workdir, tmp, shm, var tmp, hosts (ro),
        hostname (ro), tls (ro)."""
        return [
            Mount(self.workdir, "/sandbox"),
            *(Mount(host, target) for host, target in self.scratch()),
            Mount(self.hosts, "/etc/hosts", read_only=True),
            Mount(self.hostname, "/etc/hostname", read_only=True),
            Mount(self.tls, "/etc/openshell-tls", read_only=True),
        ]


def hosts_file_text(extra_hosts: Mapping[str, str] | None = None) -> str:
    """Return /etc/hosts content: the default localhost lines plus ``{name: ip}``.

    :raises ValueError: for a malformed name or address (a newline in either
        would inject arbitrary entries).
    """
    lines = list(DEFAULT_HOSTS)
    for name, ip in sorted((extra_hosts or {}).items()):
        if not _HOSTNAME.match(name):
            raise ValueError(f"extra host name {name!r} is not a valid host name")
        addr = ipaddress.ip_address(ip)  # raises ValueError
        lines.append(f"{addr}\t{name}")
    return "\n".join(lines) + "\n"


def write_hosts_file(path: str, extra_hosts: Mapping[str, str] | None = None) -> None:
    """Atomically (re)write the hosts file at ``path`` with mode 0644."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(hosts_file_text(extra_hosts))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_hostname_file(path: str, hostname: str) -> None:
    """Atomically (re)write ``path`` (mode 0644) with ``hostname`` and a newline.

    :raises ValueError: ``hostname`` is not a valid host name (a newline would add lines).
    """
    if not _HOSTNAME.match(hostname):
        raise ValueError(f"host name {hostname!r} is not a valid host name")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(hostname + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


#: the source name of each sandbox's /tmp, /dev/shm and /var/tmp tmpfs (how the
#: launcher tells them in mountinfo)
TMPFS_SOURCE = "openshell-tmp"
#: the host directories (under the sandbox's state directory) of its scratch tmpfs
SCRATCH_DIRS = ("tmp", "shm", "var-tmp")
_MNT_DETACH = 2


def mount_tmp(path: str, size: int) -> None:
    """Make ``path`` a tmpfs of at most ``size`` bytes (root-owned, 1777, nosuid, nodev).

    Mounted in the supervisor's (the host's) mount namespace, so every process
    of the sandbox shares it through the ``/tmp`` bind mount, and writes past
    the size fail with ENOSPC instead of filling the host's disk. Its pages also
    count against the sandbox's memory limit. An existing mount (a supervisor
    restarted after a crash) is resized in place. Inodes are bounded too (one
    per 4 KiB, at least 4096), so empty files cannot eat kernel memory.

    :raises OSError: the kernel refused the mount.
    """
    from openshell.supervisor import nsutil

    data = f"size={size},nr_inodes={max(4096, size // 4096)},mode=1777,uid=0,gid=0"
    flags = nsutil.MS_NOSUID | nsutil.MS_NODEV
    if os.path.ismount(path):
        nsutil.mount("tmpfs", path, "tmpfs", flags | nsutil.MS_REMOUNT, data)
    else:
        nsutil.mount(TMPFS_SOURCE, path, "tmpfs", flags, data)


def unmount_tmp(path: str) -> None:
    """Detach every mount on ``path`` (before its directory is removed). Idempotent."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(8):  # stacked mounts after repeated crashes: one each
        if not os.path.ismount(path):
            return
        if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


#: the source name of each sandbox's small-files tmpfs (hosts, tls)
FILES_SOURCE = "openshell-files"
FILES_DIR = "files"
FILES_SIZE = 4 * 2**20
_MS_NOEXEC = 8
#: the workdir's ext4 image in the sandbox's state directory; the launcher tells
#: the workdir loop mounts by this name of their backing file
WORKDIR_IMAGE = "workdir.ext4"
_MKFS = "mkfs.ext4"
MAX_TEMPLATES = 8  # empty workdir file systems kept per template directory (~170 KiB of data each for 10Gi)
#: names the template layout: templates made with other ``_mkfs`` options (another
#: prefix) are removed when a template is made
_TEMPLATE_PREFIX = "workdir2-"
_LOOP_CONTROL = "/dev/loop-control"


class WorkdirError(RuntimeError):
    """The workdir's file system cannot be made or mounted; the message names the fix."""


def mount_files(path: str) -> None:
    """Make ``path`` a small tmpfs (root-owned 0755, nosuid, nodev, noexec) for the
    files bound into the sandbox (hosts, tls). A mount already there (a supervisor
    restarted after a crash) is kept: every file on it is rewritten at each start.

    :raises OSError: the kernel refused the mount.
    """
    from openshell.supervisor import nsutil

    if os.path.ismount(path):
        return
    os.makedirs(path, mode=0o755, exist_ok=True)
    flags = nsutil.MS_NOSUID | nsutil.MS_NODEV | _MS_NOEXEC
    nsutil.mount(FILES_SOURCE, path, "tmpfs", flags, f"size={FILES_SIZE},nr_inodes=1024,mode=0755,uid=0,gid=0")


def make_workdir_image(image: str, size: int, uid: int, gid: int, template_dir: str | None = None) -> bool:
    """Create the workdir's file system: a sparse ``size``-byte file holding an empty
    ext4 whose root belongs to ``uid:gid``. An existing image is kept as it is (the
    workdir outlives supervisor restarts; its size is the one it was made with).

    Fast: the file is sparse and the inode tables and journal are initialised
    lazily (``mkfs.ext4`` ~17 ms for 10Gi here). With ``template_dir`` the empty
    file system is made once per (size, owner) in that directory
    (:func:`workdir_template`) and each image is a sparse copy of its ~170 KiB of
    data (~1 ms). Made under a temporary name and renamed, so a crash never
    leaves a half-made image that a later start would mount.

    :returns: True when the image was made now.
    :raises WorkdirError: ``mkfs.ext4`` is missing or failed, or ``size`` is more than
        the host file system has free (message names the fix).
    """
    if os.path.exists(image):
        return False
    # The image is sparse and fills as the sandbox writes: a limit beyond the free space
    # of the host file system holding it would let the sandbox fill the host's disk.
    st = os.statvfs(os.path.dirname(image) or ".")
    free = st.f_bavail * st.f_frsize
    if size > free:
        raise WorkdirError(
            f"the workdir size limit ({size / 2**30:.1f} GiB) is more than the {free / 2**30:.1f} GiB free on the host's file system "
            f"under {os.path.dirname(image)}: create the sandbox with a smaller --disk (limits.disk)"
        )
    partial = f"{image}.new"
    template = workdir_template(template_dir, size, uid, gid) if template_dir is not None else None
    if template is None:
        _mkfs(partial, size, uid, gid)
    else:
        try:
            _sparse_copy(template, partial)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
    os.replace(partial, image)
    return True


def workdir_template(template_dir: str, size: int, uid: int, gid: int) -> str | None:
    """Path of an empty workdir file system of ``size`` bytes owned by ``uid:gid`` in
    ``template_dir`` (0700), made by ``mkfs.ext4`` on first use and kept; None when
    ``template_dir`` already holds :data:`MAX_TEMPLATES` others (sizes clients chose
    must not each leave a file behind without bound: the caller runs mkfs instead).

    Images copied from one template share its file system UUID and directory hash
    seed; neither is visible inside a sandbox (no raw access to the image), and
    ext4 mounts file systems with equal UUIDs side by side.

    :raises WorkdirError: ``mkfs.ext4`` is missing or failed.
    """
    path = os.path.join(template_dir, f"{_TEMPLATE_PREFIX}{size}-{uid}-{gid}.ext4")
    try:
        if os.stat(path).st_size == size:
            return path
        os.unlink(path)  # damaged (truncated by hand, a full disk): made again
    except FileNotFoundError:
        pass
    os.makedirs(template_dir, mode=0o700, exist_ok=True)
    names = [n for n in os.listdir(template_dir) if n.endswith(".ext4")]
    for stale in (n for n in names if not n.startswith(_TEMPLATE_PREFIX)):  # an older layout
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(template_dir, stale))
    if sum(1 for n in names if n.startswith(_TEMPLATE_PREFIX)) >= MAX_TEMPLATES:
        return None
    partial = f"{path}.{os.getpid()}.{threading.get_ident()}.new"  # starts racing to make it each use their own
    try:
        _mkfs(partial, size, uid, gid)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return path


def _mkfs(path: str, size: int, uid: int, gid: int) -> None:
    """Make ``path`` (0600) a sparse ``size``-byte empty ext4 whose root belongs to ``uid:gid``; removed again on failure."""
    mkfs = shutil.which(_MKFS) or next((p for p in (f"/usr/sbin/{_MKFS}", f"/sbin/{_MKFS}") if os.path.exists(p)), None)
    if mkfs is None:
        raise WorkdirError(f"{_MKFS} not found: the sandbox's workdir needs it; install e2fsprogs (apt install e2fsprogs)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    options = f"lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner={uid}:{gid}"
    # -m 0: no blocks reserved for root (nothing in the sandbox runs as root).
    # ^resize_inode: a workdir never grows, and the blocks reserved for growing it were
    # 4 MiB of the 4.2 MiB each image copies and writes back at a start (10Gi).
    argv = [mkfs, "-q", "-F", "-m", "0", "-O", "^resize_inode", "-L", "openshell", "-E", options, path]
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        os.unlink(path)
        reason = " ".join((p.stderr or p.stdout).split())[:300]
        raise WorkdirError(f"{_MKFS} failed for the sandbox's workdir: {reason}")


def _sparse_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` (0600; a file left there is replaced) keeping its holes: only the
    data extents (``SEEK_DATA``/``SEEK_HOLE``) are copied, in the kernel (``copy_file_range``)."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fin).st_size
            offset = 0
            while offset < size:
                try:
                    start = os.lseek(fin, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data after offset: the rest is a hole
                        break
                    raise
                end = os.lseek(fin, start, os.SEEK_HOLE)
                pos = start
                while pos < end:
                    try:
                        copied = os.copy_file_range(fin, fout, end - pos, pos, pos)
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                            raise
                        copied = os.pwrite(fout, os.pread(fin, min(end - pos, 1 << 20), pos), pos)  # another file system
                    if copied == 0:
                        raise WorkdirError(f"the workdir template {src} shrank while it was copied")
                    pos += copied
                offset = end
            os.ftruncate(fout, size)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def mount_workdir(image: str, path: str, uid: int, gid: int, fresh: bool = False) -> None:
    """Loop-mount the ext4 ``image`` on ``path`` (nosuid, nodev) for the sandbox user.

    Mounted in the supervisor's (the host's) mount namespace, where uploads,
    downloads and ``--keep-workdir`` see it too; the loop device is released
    when the file system is unmounted (autoclear). ``discard``: space the sandbox
    frees is given back to the host's disk. An existing mount (a supervisor
    restarted after a crash) is kept.

    :param fresh: the image was made by this start (:func:`make_workdir_image`
        returned True), so no loop device can be backed by it yet: it is attached
        directly (:func:`_attach_loop`, no scan of every loop device on the host).
        An older image goes through ``mount -o loop``, which reuses a loop device
        already backed by it: two file system instances on one image would
        corrupt it.
    :raises WorkdirError: no loop device (the message says ``modprobe loop``) or
        the mount failed.
    """
    if not os.path.ismount(path):
        if not os.path.exists(_LOOP_CONTROL):
            raise WorkdirError(f"no loop devices ({_LOOP_CONTROL} is missing): the sandbox's workdir needs one; load the loop module (modprobe loop)")
        os.makedirs(path, mode=0o750, exist_ok=True)
        if not (fresh and _mount_fresh_image(image, path)):
            options = f"loop,nosuid,nodev,noatime,{_WORKDIR_DATA}"
            p = subprocess.run(["mount", "-t", "ext4", "-o", options, image, path], capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if p.returncode != 0:
                reason = " ".join((p.stderr or p.stdout).split())[:300]
                hint = "; load the loop module (modprobe loop)" if "loop" in reason.lower() else ""
                raise WorkdirError(f"cannot mount the sandbox's workdir {image}: {reason}{hint}")
    lost = os.path.join(path, "lost+found")
    if os.path.isdir(lost) and not os.listdir(lost):
        os.rmdir(lost)  # e2fsck makes it again when it needs one
    os.chown(path, uid, gid)
    os.chmod(path, 0o750)


def workdir_slack(size: int) -> int:
    """Bytes an ext4 workdir of ``size`` bytes may still show free when a write
    already fails with ENOSPC (ext4 holds back blocks for the metadata of
    delayed allocation): 5 %, at most 64Mi."""
    return min(size // 20, 64 * 2**20)


def full_reason(path: str, name: str, size: str, *, slack: int = 0) -> str:
    """Why the file system at ``path`` takes no more from an unprivileged writer, as a
    status reason; ``""`` when it does, or when it cannot be read.

    :param name: the path the sandbox sees (``/tmp``, ``/sandbox``).
    :param size: its size as shown to users (``32Mi``).
    :param slack: bytes still free that count as full (blocks only root may use).
    :returns: ``"NAME is full (SIZE): …"`` when at most ``slack`` bytes are left,
        ``"NAME is out of inodes (…)"`` when space is left but no file can be created.
    """
    try:
        st = os.statvfs(path)
    except OSError:
        return ""
    if st.f_bavail * st.f_frsize <= slack:
        return f"{name} is full ({size}): writes fail with ENOSPC"
    if st.f_favail == 0:
        return f"{name} is out of inodes ({st.f_files:,} files and directories in {size}): creating files fails with ENOSPC"
    return ""


def loop_devices_of(image: str) -> list[str]:
    """The loop devices (``/dev/loopN``) whose backing file is ``image``."""
    want = os.path.realpath(image)
    found = []
    try:
        names = [n for n in os.listdir("/sys/block") if n.startswith("loop")]
    except OSError:
        return []
    for name in names:
        backing = loop_backing_file(name)
        if backing is not None and backing.removesuffix(" (deleted)") == want:
            found.append(f"/dev/{name}")
    return found


def loop_backing_file(name: str) -> str | None:
    """The backing file of loop device ``name`` (``loop3``, ``/dev/loop3``), or None."""
    try:
        with open(f"/sys/block/{os.path.basename(name)}/loop/backing_file") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


_LOOP_CLR_FD = 0x4C01
_LOOP_CONFIGURE = 0x4C0A  # Linux 5.8+
_LOOP_CTL_GET_FREE = 0x4C82
_LO_FLAGS_AUTOCLEAR = 4
_MS_NOATIME = 1024
#: ext4 options of the workdir (noinit_itable: no background zeroing of the lazily
#: made inode tables, which would fill the sparse image with zeros)
_WORKDIR_DATA = "noinit_itable,discard"
#: tries at a free loop device: creates racing for one all get the same number from
#: LOOP_CTL_GET_FREE and one wins each round (100 sandboxes created at once)
_LOOP_TRIES = 256


class _LoopInfo64(ctypes.Structure):
    _fields_ = [
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_char * 64),
        ("lo_crypt_name", ctypes.c_char * 64),
        ("lo_encrypt_key", ctypes.c_char * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    ]


class _LoopConfig(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_uint32), ("block_size", ctypes.c_uint32), ("info", _LoopInfo64), ("reserved", ctypes.c_uint64 * 8)]


def _attach_loop(image_fd: int, name: str) -> tuple[int, str]:
    """Bind a free loop device to ``image_fd`` (autoclear) and return an open
    descriptor of it and its path, ``/dev/loopN`` (the device is released when the
    last user, this descriptor or a mount, goes away). ``name`` is shown by ``losetup``.

    :raises OSError: no free loop device after :data:`_LOOP_TRIES` tries, a kernel
        without ``LOOP_CONFIGURE`` (``EINVAL``/``ENOTTY``), or no ``/dev/loopN`` node.
    """
    import fcntl

    cfg = _LoopConfig(fd=image_fd)
    cfg.info.lo_flags = _LO_FLAGS_AUTOCLEAR
    cfg.info.lo_file_name = os.fsencode(name)[:63]
    ctl = os.open(_LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(_LOOP_TRIES):
            path = f"/dev/loop{fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)}"
            dev = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.ioctl(dev, _LOOP_CONFIGURE, bytes(cfg))
            except OSError as exc:
                os.close(dev)
                if exc.errno == errno.EBUSY:  # another start took it first
                    continue
                raise
            return dev, path
    finally:
        os.close(ctl)
    raise OSError(errno.EBUSY, f"no free loop device after {_LOOP_TRIES} tries")


def _mount_fresh_image(image: str, path: str) -> bool:
    """Attach ``image`` to a loop device and mount it on ``path`` with two system
    calls and no ``mount(8)``: mount(8) looks at every loop device on the host for
    one already backed by the image, which costs ~0.1 ms per sandbox running (50 ms
    with 500). Only for an image made by this start (nothing can be backed by it).

    :returns: False when this kernel or ``/dev`` cannot do it (the caller runs mount(8)).
    :raises WorkdirError: the kernel refused to mount the file system.
    """
    from openshell.supervisor import nsutil

    fd = os.open(image, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        try:
            dev, dev_path = _attach_loop(fd, image)
        except OSError:
            return False
    finally:
        os.close(fd)  # the loop device holds the file now
    try:
        flags = nsutil.MS_NOSUID | nsutil.MS_NODEV | _MS_NOATIME
        try:
            # By name, as mount(8) does (the source shown in the mount table); the
            # device stays bound to this image while ``dev`` is open.
            nsutil.mount(dev_path, path, "ext4", flags, _WORKDIR_DATA)
        except OSError as exc:
            raise WorkdirError(f"cannot mount the sandbox's workdir {image}: {exc.strerror}") from exc
    finally:
        os.close(dev)  # mounted: the mount holds the device; failed: autoclear releases it
    return True


def unmount_workdir(path: str, image: str) -> None:
    """Unmount the workdir at ``path`` and detach every loop device still backed by
    ``image`` (one left by a crash between losetup and mount). Idempotent.

    :raises OSError: an unmount failed.
    """
    import fcntl

    unmount_tmp(path)
    for dev in loop_devices_of(image):
        try:
            fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.ioctl(fd, _LOOP_CLR_FD)  # still in use: the kernel detaches it on last close
        except OSError:
            pass
        finally:
            os.close(fd)


def extract_workdir(sandbox_dir: str) -> None:
    """Turn ``<sandbox_dir>/workdir`` into a plain directory holding what the
    sandbox's workdir file system holds, and remove the image (``delete
    --keep-workdir``: the files stay on the host after the sandbox is gone).
    A sandbox without an image (plain directory) is left as it is.

    :raises OSError: the copy or a mount failed; the image is kept then.
    """
    workdir = os.path.join(sandbox_dir, "workdir")
    image = os.path.join(sandbox_dir, WORKDIR_IMAGE)
    if not os.path.exists(image):
        return
    if not os.path.ismount(workdir):
        os.makedirs(workdir, exist_ok=True)
        p = subprocess.run(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noexec", image, workdir], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise OSError(errno.EIO, f"cannot mount {image}: {' '.join(p.stderr.split())[:300]}")
    kept = os.path.join(sandbox_dir, "workdir.kept")
    shutil.rmtree(kept, ignore_errors=True)
    try:
        p = subprocess.run(["cp", "-a", "--reflink=auto", f"{workdir}/.", kept], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise OSError(errno.EIO, f"cannot copy the workdir out of {image}: {' '.join(p.stderr.split())[:300]}")
    finally:
        unmount_workdir(workdir, image)
    os.rmdir(workdir)
    os.replace(kept, workdir)
    os.unlink(image)


def prepare_sandbox_dirs(
    state_dir: str,
    uid: int,
    gid: int,
    extra_hosts: Mapping[str, str] | None = None,
    tmp_size: int | None = None,
    disk_size: int | None = None,
    hostname: str = "sandbox",
    template_dir: str | None = None,
) -> SandboxDirs:
    """Create (or fix up) the per-sandbox host directories under ``state_dir``. Idempotent.

    :param state_dir: the sandbox's state directory (created 0700 when missing;
        the sandbox reaches its directories only through the bind mounts, which
        root sets up, so nothing under it needs to be traversable by others).
    :param uid, gid: the sandbox user's ids (owner of the workdir).
    :param extra_hosts: ``{name: ip}`` lines for /etc/hosts.
    :param tmp_size: bytes of each of the ``tmp``, ``shm`` and ``var-tmp`` tmpfs
        (:func:`mount_tmp`; the sandbox's ``/tmp``, ``/dev/shm``, ``/var/tmp``), and
        the hosts and tls files go on a tmpfs of their own (:func:`mount_files`);
        None: plain directories and files.
    :param hostname: the line of ``/etc/hostname`` (the sandbox's UTS host name; never
        the host's, nor a container engine's file, whose mountinfo root names its
        data directory).
    :param disk_size: bytes of the workdir's file system (:func:`make_workdir_image`,
        :func:`mount_workdir`); None: a plain directory.
    :param template_dir: where empty workdir file systems are kept to be copied
        (:func:`workdir_template`); None: ``mkfs.ext4`` for each one.
    :returns: the paths, with ``.mounts()`` for ``LaunchSpec.mounts``.
    :raises WorkdirError: the workdir's file system cannot be made or mounted.
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    files = os.path.join(state_dir, FILES_DIR) if tmp_size is not None else state_dir
    dirs = SandboxDirs(
        root=state_dir,
        workdir=os.path.join(state_dir, "workdir"),
        tmp=os.path.join(state_dir, "tmp"),
        hosts=os.path.join(files, "hosts"),
        tls=os.path.join(files, "tls"),
        shm=os.path.join(state_dir, "shm"),
        var_tmp=os.path.join(state_dir, "var-tmp"),
        hostname=os.path.join(files, "hostname"),
    )
    if disk_size is not None:
        image = os.path.join(state_dir, WORKDIR_IMAGE)
        made = make_workdir_image(image, disk_size, uid, gid, template_dir)
        mount_workdir(image, dirs.workdir, uid, gid, fresh=made)
    else:
        os.makedirs(dirs.workdir, exist_ok=True)
        os.chown(dirs.workdir, uid, gid)
        os.chmod(dirs.workdir, 0o750)
    for path, _ in dirs.scratch():
        os.makedirs(path, exist_ok=True)
        os.chown(path, 0, 0)
        os.chmod(path, 0o1777)  # chmod, not makedirs(mode=): umask would drop the sticky bit
        if tmp_size is not None:
            mount_tmp(path, tmp_size)
    if tmp_size is not None:
        mount_files(files)
    os.makedirs(dirs.tls, exist_ok=True)
    os.chmod(dirs.tls, 0o755)
    write_hosts_file(dirs.hosts, extra_hosts)
    write_hostname_file(dirs.hostname, hostname)
    return dirs
