"""The sandbox's Unix identity (POLICY.md §5 ``process``).

``run_as_user`` / ``run_as_group`` are either a name (default ``sandbox``) or a
numeric id >= 1; never 0 / root. The default ``sandbox`` user and group are
system accounts created on first use with ``groupadd``/``useradd`` (which take
the shadow-utils locks, so concurrent supervisors do not corrupt /etc/passwd).
"""

from __future__ import annotations

import grp
import logging
import pwd
import shutil
import subprocess

log = logging.getLogger("openshell.supervisor.users")

SANDBOX_USER = "sandbox"
SANDBOX_GROUP = "sandbox"
SANDBOX_HOME = "/sandbox"


class UserError(RuntimeError):
    """The sandbox user or group cannot be resolved or created."""


def _run(argv: list[str]) -> None:
    tool = shutil.which(argv[0], path="/usr/sbin:/sbin:/usr/bin:/bin")
    if tool is None:
        raise UserError(f"{argv[0]} not found; cannot create the sandbox account")
    proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, check=False)
    # 9 = name already in use (another supervisor won the race): fine.
    if proc.returncode not in (0, 9):
        raise UserError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")


def ensure_sandbox_account(user: str = SANDBOX_USER, group: str = SANDBOX_GROUP) -> tuple[int, int]:
    """Create the system group ``group`` and user ``user`` when absent.

    The user gets home ``/sandbox`` (not created here: it is a per-sandbox bind
    mount), shell ``/bin/sh`` and no password (locked). Must run as root.

    :returns: ``(uid, gid)``.
    :raises UserError: when creation fails.
    """
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        _run(["groupadd", "--system", group])
        gid = grp.getgrnam(group).gr_gid
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        _run(["useradd", "--system", "--gid", str(gid), "--no-create-home", "--home-dir", SANDBOX_HOME, "--shell", "/bin/sh", user])
        uid = pwd.getpwnam(user).pw_uid
    return uid, gid


def _numeric(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def resolve_ids(run_as_user: str = SANDBOX_USER, run_as_group: str = SANDBOX_GROUP, *, create: bool = True) -> tuple[int, int]:
    """Resolve the policy's ``run_as_user``/``run_as_group`` to ``(uid, gid)``.

    A numeric value is used as is; a name is looked up, and the default
    ``sandbox`` account is created when missing (``create=True``). An unset
    group falls back to the user's primary group.

    :raises UserError: unknown name, or an id of 0 / the name ``root`` (POLICY §5).
    """
    run_as_user = str(run_as_user or SANDBOX_USER)
    run_as_group = str(run_as_group or "")
    if run_as_user in ("root", "0") or run_as_group in ("root", "0"):
        raise UserError("process.run_as_user/run_as_group must not be root (0)")
    uid = _numeric(run_as_user)
    primary_gid: int | None = None
    if uid is None:
        try:
            entry = pwd.getpwnam(run_as_user)
        except KeyError:
            if not (create and run_as_user == SANDBOX_USER):
                raise UserError(f"process.run_as_user: user {run_as_user!r} does not exist") from None
            ensure_sandbox_account(SANDBOX_USER, SANDBOX_GROUP)
            entry = pwd.getpwnam(run_as_user)
        uid, primary_gid = entry.pw_uid, entry.pw_gid
    gid: int | None
    if not run_as_group:
        gid = primary_gid if primary_gid is not None else uid
    else:
        gid = _numeric(run_as_group)
        if gid is None:
            try:
                gid = grp.getgrnam(run_as_group).gr_gid
            except KeyError:
                if not (create and run_as_group == SANDBOX_GROUP):
                    raise UserError(f"process.run_as_group: group {run_as_group!r} does not exist") from None
                ensure_sandbox_account()
                gid = grp.getgrnam(run_as_group).gr_gid
    if uid == 0 or gid == 0:
        raise UserError("process.run_as_user/run_as_group resolve to root (0); refusing")
    return uid, gid


def ids_for_policy(policy: dict, *, create: bool = True) -> tuple[int, int]:
    """Resolve ``(uid, gid)`` from a ``Policy.to_dict()`` dict's ``process`` section."""
    proc = policy.get("process") or {}
    return resolve_ids(proc.get("run_as_user") or SANDBOX_USER, proc.get("run_as_group") or SANDBOX_GROUP, create=create)
