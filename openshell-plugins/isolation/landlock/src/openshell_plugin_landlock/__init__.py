"""Landlock filesystem ruleset built from ``filesystem_policy`` (POLICY.md §4).

Two phases, so paths are opened as root but enforced as the sandbox user:

1. ``prepare_in_child(ctx)`` — called by the child launcher as root, after the
   mount namespace and its bind mounts exist (so ``/sandbox`` already names the
   per-sandbox workdir): creates the ruleset and adds one rule per path, each
   path opened ``O_PATH`` as root.
2. ``apply_in_child(ctx)`` — called after the privilege drop: ``no_new_privs``
   and ``landlock_restrict_self``. With ABI >= 6 the same ruleset also confines
   signals and abstract unix sockets to the sandbox's own domain (scopes).

The PyPI ``landlock`` package supplies the constants and syscall wrappers. Its
error check reads ``errno`` after every call, even a successful one, so every
call here goes through ``_call`` which clears ctypes' errno first (NOTES-deps).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import stat
import sys
from collections.abc import Callable
from typing import Any

# Imported here, not lazily: the launcher loads this module before it mounts the
# sandbox's /tmp, which may hide an installation living under /tmp.
import landlock  # noqa: E402,F401
from landlock import FSAccess, plumbing  # noqa: E402,F401
from openshell.plugin import (
    LANDLOCK_ORDER,
    IsolationContext,
    IsolationError,
    IsolationLayer,
    ProbeResult,
    hookimpl,
)

log = logging.getLogger("openshell.isolation.landlock")

#: LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL (ABI 6)
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1
SCOPE_ABI = 6

# Landlock syscalls arrived after the 2019 syscall-table unification, so every
# architecture except alpha uses the same numbers.
_SYS_CREATE_RULESET = 444
_PR_SET_NO_NEW_PRIVS = 38


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a ``landlock`` package syscall wrapper with ctypes' errno cleared first.

    The package treats any non-zero errno as failure, and a successful syscall
    does not reset errno, so a stale value from an earlier failure would raise.
    """
    ctypes.set_errno(0)
    return fn(*args)


def abi_version() -> int:
    """Return the kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    try:
        from landlock import plumbing
    except ImportError:
        return 0
    try:
        ctypes.set_errno(0)
        plumbing.landlock_abi_version.cache_clear()
        return int(_call(plumbing.landlock_abi_version))
    except OSError:
        return 0


def _rights() -> tuple[int, int, int, int]:
    """Return ``(handled, rw_file, ro_dir, ro_file)`` access masks for this kernel's ABI.

    ``handled`` is every filesystem right the ABI knows (POLICY §4: read_write
    gets all of them); file rules may carry file rights only (EINVAL otherwise).
    """

    all_file = int(_call(FSAccess.all_file))
    handled = all_file | int(_call(FSAccess.all_dir))
    ro_file = int(FSAccess.READ_FILE | FSAccess.EXECUTE)
    ro_dir = ro_file | int(FSAccess.READ_DIR)
    return handled, all_file, ro_dir, ro_file


class _ScopeAttr(ctypes.Structure):
    # struct landlock_ruleset_attr as of ABI 6.
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _create_ruleset(handled_fs: int, scoped: int) -> int:
    """Create a ruleset handling ``handled_fs`` and, with ABI >= 6, ``scoped``.

    Scopes must live in the *same* ruleset as the filesystem rules: every
    Landlock domain that does not handle REFER denies all cross-directory
    renames (EXDEV), so a separate scope-only domain would break ``mv a sub/``.
    The ``landlock`` package predates scopes and its ``RulesetAttr`` has only
    the filesystem field, hence this raw syscall with the ABI 6 struct.
    Raises ``OSError``.
    """
    if platform.machine() == "alpha":  # pragma: no cover - numbers differ there
        raise OSError(38, "Landlock syscalls not wired for alpha")
    attr = _ScopeAttr(handled_fs, 0, scoped)
    size = ctypes.sizeof(attr) if scoped else ctypes.sizeof(ctypes.c_uint64)  # ABI < 6 knows only the first field
    ctypes.set_errno(0)
    fd = _libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    return int(fd)


def _filesystem(ctx: IsolationContext) -> tuple[list[str], list[str], str]:
    """Return ``(read_only, read_write, compatibility)`` from ``ctx.policy`` (a ``Policy.to_dict()``)."""
    fs = ctx.policy.get("filesystem") or {}
    read_only = list(fs.get("read_only") or ())
    read_write = list(fs.get("read_write") or ())
    # parse_policy normally adds the workdir already; adding it again is harmless.
    if fs.get("include_workdir", True) and "/sandbox" not in read_write:
        read_write.append("/sandbox")
    compatibility = (ctx.policy.get("landlock") or {}).get("compatibility", "best_effort")
    return read_only, read_write, compatibility


class LandlockLayer(IsolationLayer):
    """Restricts filesystem access to the policy's read-only and read-write paths."""

    name = "landlock"
    summary = "Landlock filesystem ruleset from filesystem_policy (plus signal/abstract-socket scoping)"
    order = LANDLOCK_ORDER
    required = True

    def __init__(self) -> None:
        self._ruleset_fd: int | None = None
        self._disabled = False

    def probe(self) -> ProbeResult:
        """Report the kernel's Landlock ABI (no side effects)."""
        abi = abi_version()
        if abi <= 0:
            return ProbeResult(False, "Landlock not available in this kernel")
        return ProbeResult(True, f"Landlock ABI {abi}")

    def prepare(self, ctx: IsolationContext) -> None:
        """Supervisor-side checks, so problems show in the supervisor's log at start.

        No Landlock: hard_requirement raises ``IsolationError``; best_effort logs a
        high-severity warning. Missing policy paths are logged here (the child
        skips them quietly under best_effort and refuses under hard_requirement;
        ``/sandbox`` is skipped here, it is a mount point the launcher creates).
        """
        read_only, read_write, compatibility = _filesystem(ctx)
        if abi_version() <= 0:
            if compatibility == "hard_requirement":
                raise IsolationError("Landlock is not available in this kernel and the policy says landlock.compatibility: hard_requirement")
            log.critical(
                "event=landlock_unavailable severity=high sandbox=%s detail=%r", ctx.sandbox_id, "sandbox starts WITHOUT filesystem isolation (best_effort)"
            )
            return
        for path in [*read_only, *read_write]:
            if path != "/sandbox" and not os.path.lexists(path):
                log.warning("event=landlock_path_missing sandbox=%s path=%s compatibility=%s", ctx.sandbox_id, path, compatibility)

    def prepare_in_child(self, ctx: IsolationContext) -> None:
        """Build the ruleset as root (paths opened ``O_PATH`` before the privilege drop).

        POLICY §4: read_only → read-file, read-dir, execute; read_write → every
        handled right; file paths get file rights only; a missing path is skipped
        (best_effort, logged) or refused (hard_requirement, ``IsolationError``
        naming it). No Landlock: best_effort warns and disables the layer,
        hard_requirement raises ``IsolationError``.
        """

        read_only, read_write, compatibility = _filesystem(ctx)
        hard = compatibility == "hard_requirement"
        if abi_version() <= 0:
            if hard:
                raise IsolationError("Landlock is not available and landlock.compatibility is hard_requirement")
            print("openshell-launcher: WARNING: Landlock not available; running WITHOUT filesystem isolation (best_effort)", file=sys.stderr)
            self._disabled = True
            return
        handled, rw_file, ro_dir, ro_file = _rights()
        # ABI >= 6: signals and abstract unix sockets stay inside the sandbox's domain.
        scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if abi_version() >= SCOPE_ABI else 0
        try:
            ruleset = _create_ruleset(handled, scoped)
        except OSError as exc:
            raise IsolationError(f"landlock_create_ruleset: {exc.strerror}") from exc
        add_rule = plumbing.get_add_rule()
        # read_write last so a path listed twice ends with the wider rights
        # (Landlock ORs rules on the same inode anyway).
        for path, writable in [(p, False) for p in read_only] + [(p, True) for p in read_write]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                if hard:
                    os.close(ruleset)
                    raise IsolationError(f"filesystem path {path}: {exc.strerror} (landlock.compatibility is hard_requirement)") from exc
                # info, not warning: the child's stderr is the user's stream; the
                # supervisor already logged the missing path in prepare().
                log.info("event=landlock_path_skipped path=%s reason=%r", path, exc.strerror)
                continue
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                if writable:
                    access = handled if is_dir else rw_file
                else:
                    access = ro_dir if is_dir else ro_file
                rule = plumbing.PathBeneathAttr(access, fd)
                _call(add_rule, ruleset, 1, ctypes.byref(rule), 0)  # 1 = LANDLOCK_RULE_PATH_BENEATH
            except OSError as exc:
                os.close(ruleset)
                raise IsolationError(f"landlock rule for {path}: {exc.strerror}") from exc
            finally:
                os.close(fd)
        self._ruleset_fd = ruleset

    def apply_in_child(self, ctx: IsolationContext) -> None:
        """Enforce the ruleset on the launcher (after the drop to the sandbox user).

        Builds the ruleset first when ``prepare_in_child`` was not called (then
        paths are opened with the caller's own rights). Raises ``IsolationError``.
        """
        if self._ruleset_fd is None and not self._disabled:
            self.prepare_in_child(ctx)
        if self._disabled:
            return

        fd, self._ruleset_fd = self._ruleset_fd, None
        assert fd is not None
        try:
            _call(plumbing.get_prctl(), _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            _call(plumbing.get_restrict_self(), fd, 0)
        except OSError as exc:
            raise IsolationError(f"landlock_restrict_self: {exc.strerror}") from exc
        finally:
            os.close(fd)


@hookimpl
def register_isolation_layers(register: Callable[[type], None]) -> None:
    register(LandlockLayer)


__all__ = ["LandlockLayer", "abi_version"]
