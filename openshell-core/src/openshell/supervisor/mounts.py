"""Per-sandbox host directories and the bind mounts that show them inside (DESIGN.md §4).

The ``local`` driver gives each sandbox, under its state directory::

    <state>/workdir   owned by the sandbox user, 0750   → /sandbox
    <state>/tmp       root-owned, 1777 (sticky)         → /tmp
                      (a tmpfs of the sandbox's ``tmp`` size limit, mounted on the host)
    <state>/hosts     localhost lines + extra hosts     → /etc/hosts (read-only)
    <state>/tls       CA files written by the proxy     → /etc/openshell-tls (read-only)

The child launcher applies the mounts in its private mount namespace.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
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

    def mounts(self) -> list[Mount]:
        """Return the standard bind mounts: workdir, tmp, hosts (ro), tls (ro)."""
        return [
            Mount(self.workdir, "/sandbox"),
            Mount(self.tmp, "/tmp"),
            Mount(self.hosts, "/etc/hosts", read_only=True),
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


#: the source name of each sandbox's /tmp tmpfs (how the launcher tells them in mountinfo)
TMPFS_SOURCE = "openshell-tmp"
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


def prepare_sandbox_dirs(state_dir: str, uid: int, gid: int, extra_hosts: Mapping[str, str] | None = None, tmp_size: int | None = None) -> SandboxDirs:
    """Create (or fix up) the per-sandbox host directories under ``state_dir``. Idempotent.

    :param state_dir: the sandbox's state directory (created 0700 when missing;
        the sandbox reaches its directories only through the bind mounts, which
        root sets up, so nothing under it needs to be traversable by others).
    :param uid, gid: the sandbox user's ids (owner of the workdir).
    :param extra_hosts: ``{name: ip}`` lines for /etc/hosts.
    :param tmp_size: bytes of the ``tmp`` tmpfs (:func:`mount_tmp`); None: a plain directory.
    :returns: the paths, with ``.mounts()`` for ``LaunchSpec.mounts``.
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    dirs = SandboxDirs(
        root=state_dir,
        workdir=os.path.join(state_dir, "workdir"),
        tmp=os.path.join(state_dir, "tmp"),
        hosts=os.path.join(state_dir, "hosts"),
        tls=os.path.join(state_dir, "tls"),
    )
    os.makedirs(dirs.workdir, exist_ok=True)
    os.chown(dirs.workdir, uid, gid)
    os.chmod(dirs.workdir, 0o750)
    os.makedirs(dirs.tmp, exist_ok=True)
    os.chown(dirs.tmp, 0, 0)
    os.chmod(dirs.tmp, 0o1777)  # chmod, not makedirs(mode=): umask would drop the sticky bit
    if tmp_size is not None:
        mount_tmp(dirs.tmp, tmp_size)
    os.makedirs(dirs.tls, exist_ok=True)
    os.chmod(dirs.tls, 0o755)
    write_hosts_file(dirs.hosts, extra_hosts)
    return dirs
