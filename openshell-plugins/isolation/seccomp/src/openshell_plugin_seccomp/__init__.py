"""seccomp filter: dangerous syscalls and socket families fail with EPERM (POLICY.md §5).

Default action ALLOW; the listed calls answer ``EPERM``; ``clone3`` answers
``ENOSYS`` so libc falls back to ``clone`` (whose flags, unlike clone3's, live
in a register a filter can inspect). Nothing is ever killed. The filter is the
last step before ``execve`` in the child launcher.
"""

from __future__ import annotations

import array
import errno
import logging
import os
import platform
import socket
from collections.abc import Callable

# Imported here, not lazily: the launcher loads this module before it mounts the
# sandbox's /tmp, which may hide an installation living under /tmp.
import pyseccomp  # noqa: E402,F401
from openshell.plugin import (
    SECCOMP_ORDER,
    IsolationContext,
    IsolationError,
    IsolationLayer,
    ProbeResult,
    hookimpl,
)

log = logging.getLogger("openshell.isolation.seccomp")

AF_NETLINK = 16
AF_PACKET = 17
AF_BLUETOOTH = 31
AF_VSOCK = 40
NETLINK_ROUTE = 0
TIOCSTI = 0x5412
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3

#: Calls the supervisor is told about (user notification) when a listener channel is given:
#: it records who connects, and when processes exec (connect-time attribution).
NOTIFIED_SYSCALLS: tuple[str, ...] = ("connect", "execve", "execveat")

#: Syscalls that fail with EPERM unconditionally (POLICY §5).
DENIED_SYSCALLS: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    # mount family
    "mount",
    "umount2",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
    "fspick",
    "mount_setattr",
    "open_tree_attr",
    "pivot_root",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "memfd_create",
)

#: Calls newer than the libseccomp on some hosts: (name -> x86_64/aarch64 number),
#: used only when libseccomp cannot resolve the name. Unified numbering (>= 424).
_FALLBACK_NUMBERS = {"mount_setattr": 442, "open_tree_attr": 467}

#: Names that may be unknown to both libseccomp and an older kernel; skipping
#: them is safe because the kernel then answers ENOSYS anyway.
_OPTIONAL = frozenset({"open_tree_attr"})

#: clone(2) flags that create namespaces. CLONE_NEWTIME (0x80) is absent on
#: purpose: in clone(2) the low byte is the exit signal, not a flag.
NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

# clone's flags are argument 0 on x86_64/aarch64/arm/riscv/ppc; s390 swaps the
# first two arguments.
_CLONE_FLAGS_ARG = 1 if platform.machine().startswith("s390") else 0


def build_filter(notify: bool = False) -> pyseccomp.SyscallFilter:
    """Return the sandbox's seccomp filter, not yet loaded.

    :param notify: ``connect``/``execve``/``execveat`` raise a user notification
        (the supervisor attributes connections at connect time); loading then
        makes a listener fd (``pyseccomp``'s ``seccomp_notify_fd``).

    Raises ``IsolationError`` when libseccomp is missing or rejects a rule.
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:
        raise IsolationError(f"pyseccomp/libseccomp unavailable: {exc}") from exc

    eperm = sc.ERRNO(errno.EPERM)
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        # A syscall from a foreign ABI (e.g. int 0x80) would bypass native-arch
        # rules; it gets ENOSYS instead of libseccomp's default KILL ("never kill").
        f.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(errno.ENOSYS))
        for name in DENIED_SYSCALLS:
            try:
                nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
            except Exception:  # noqa: BLE001 - pyseccomp raises various types for unknown names
                nr = -1
            if nr < 0:
                nr = _FALLBACK_NUMBERS.get(name, -1) if platform.machine() in ("x86_64", "aarch64") else -1
            if nr < 0:
                if name in _OPTIONAL:
                    continue
                raise IsolationError(f"seccomp: libseccomp does not know syscall {name}")
            f.add_rule(eperm, nr)
        for family in (AF_PACKET, AF_VSOCK, AF_BLUETOOTH):
            f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, family))
        f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, AF_NETLINK), sc.Arg(2, sc.NE, NETLINK_ROUTE))
        for flag in NAMESPACE_FLAGS.values():
            f.add_rule(eperm, "clone", sc.Arg(_CLONE_FLAGS_ARG, sc.MASKED_EQ, flag, flag))
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        # A program's own listener would take its calls' notifications before
        # ours (the newest filter's USER_NOTIF wins), hiding its connects and execs.
        f.add_rule(eperm, "seccomp", sc.Arg(1, sc.MASKED_EQ, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_NEW_LISTENER))
        # A subreaper adopts orphans it did not create, so it would sit on their
        # ancestor chain and vouch for them in a binary rule (connect-time
        # attribution matches ancestors as they were at creation). Inside the
        # sandbox the PID namespace's init already reaps orphans.
        f.add_rule(eperm, "prctl", sc.Arg(0, sc.EQ, PR_SET_CHILD_SUBREAPER))
        if notify:
            for name in NOTIFIED_SYSCALLS:
                f.add_rule(sc.NOTIFY, name)
        # Not in POLICY §5 but cheap: TIOCSTI pushes input into a terminal, so a
        # sandbox sharing a tty with its caller could type commands outside it
        # (dev.tty.legacy_tiocsti is still 1 on many kernels). cmd is 32-bit.
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    except IsolationError:
        raise
    except OSError as exc:
        raise IsolationError(f"seccomp: cannot build filter: {exc}") from exc
    return f


class SeccompLayer(IsolationLayer):
    """Loads the syscall filter as the last step before exec."""

    name = "seccomp"
    summary = "seccomp filter: dangerous syscalls and socket families fail with EPERM"
    order = SECCOMP_ORDER
    required = True

    def __init__(self) -> None:
        self._filter = None

    def probe(self) -> ProbeResult:
        """Report whether seccomp filters and libseccomp are usable (no side effects)."""
        try:
            with open("/proc/self/status") as f:
                has_field = any(line.startswith("Seccomp:") for line in f)
        except OSError:
            has_field = False
        if not has_field:
            return ProbeResult(False, "kernel without seccomp (no Seccomp: line in /proc/self/status)")
        try:
            import pyseccomp as sc

            version = f"libseccomp API level {sc.get_api()}"
        except Exception as exc:  # noqa: BLE001
            return ProbeResult(False, f"libseccomp unavailable: {exc}")
        return ProbeResult(True, f"seccomp filters available ({version})")

    def prepare_in_child(self, ctx: IsolationContext) -> None:
        """Compile the filter before the privilege drop (no kernel state changes)."""
        self._filter = build_filter(notify=_notify_fd(ctx) >= 0)

    def apply_in_child(self, ctx: IsolationContext) -> None:
        """Load the filter (libseccomp sets ``no_new_privs`` first). Raises ``IsolationError``.

        With a notify channel (``ctx.extra["seccomp"]["notify_fd"]``, a unix socket
        to the supervisor) the listener fd is sent on it (``SCM_RIGHTS``) before
        anything else runs under the filter; failing to send fails the launch.
        """
        chan = _notify_fd(ctx)
        f, self._filter = self._filter or build_filter(notify=chan >= 0), None
        try:
            f.load()
        except OSError as exc:
            raise IsolationError(f"seccomp load: {os.strerror(exc.errno) if exc.errno else exc}") from exc
        if chan >= 0:
            _send_listener(f, chan)


def _notify_fd(ctx: IsolationContext) -> int:
    value = (ctx.extra.get("seccomp") or {}).get("notify_fd", -1)
    return value if isinstance(value, int) else -1


def _send_listener(f: pyseccomp.SyscallFilter, chan: int) -> None:
    """Send the loaded filter's listener fd over the unix socket ``chan`` and close both."""
    import pyseccomp as sc

    listener = sc._libseccomp.seccomp_notify_fd(f._filter)  # noqa: SLF001 - pyseccomp has no public accessor
    if listener < 0:
        raise IsolationError(f"seccomp: no listener fd ({os.strerror(-listener)})")
    sock = socket.socket(fileno=chan)
    try:
        sock.sendmsg([b"L"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [listener]))])
    except OSError as exc:
        raise IsolationError(f"seccomp: cannot hand the listener to the supervisor: {exc.strerror or exc}") from exc
    finally:
        sock.close()
        os.close(listener)


@hookimpl
def register_isolation_layers(register: Callable[[type], None]) -> None:
    register(SeccompLayer)


__all__ = ["DENIED_SYSCALLS", "NAMESPACE_FLAGS", "NOTIFIED_SYSCALLS", "SeccompLayer", "build_filter"]
