"""Thin ctypes wrappers for namespace syscalls Python 3.11 lacks (setns, unshare, mount).

Namespace switches made with ``setns`` affect only the calling *thread* for the
network namespace, so ``in_netns`` is safe in a multi-threaded supervisor as
long as the block does not await (it must run in one thread from start to end).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
from typing import Iterator

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWCGROUP = 0x02000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

NETNS_DIR = "/run/netns"


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace ``fd`` refers to. Raises ``OSError``."""
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    """Detach the calling thread/process from the namespaces in ``flags``. Raises ``OSError``."""
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2). Raises ``OSError`` naming the target."""
    ret = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(ret, f"mount {source or '(none)'} on {target}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2). Raises ``OSError`` naming the target."""
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def netns_path(name: str) -> str:
    """Path of a named network namespace (iproute2 convention)."""
    return os.path.join(NETNS_DIR, name)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with the calling thread inside network namespace ``name``.

    Sockets created inside the block stay in that namespace after it ends.
    Raises ``OSError`` when the namespace does not exist.
    """
    with open("/proc/thread-self/ns/net", "rb") as home, open(netns_path(name), "rb") as target:
        setns(target.fileno(), CLONE_NEWNET)
        try:
            yield
        finally:
            setns(home.fileno(), CLONE_NEWNET)


def socket_in_netns(name: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """Create a socket that belongs to network namespace ``name``."""
    with in_netns(name):
        return socket.socket(family, type, proto)
