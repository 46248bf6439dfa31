"""Removing every trace of a sandbox: its processes, namespaces and files.

Used by the supervisor on a clean stop and by the compute driver after a
crash (a dead supervisor cleans nothing), so every step tolerates a missing
piece and can run twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from openshell.plugin.kinds import IsolationContext
from openshell.supervisor.layers import REQUIRED_LAYERS

log = logging.getLogger("openshell.supervisor")

CONTEXT_FILE = "context.json"


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def sandbox_pids(netns: str) -> list[int]:
    """Pids of every process inside network namespace ``netns`` (by namespace inode)."""
    ino = _netns_inode(netns)
    if ino is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def kill_sandbox_processes(netns: str, grace: float = 2.0) -> None:
    """SIGTERM every process in the sandbox, then SIGKILL what is left after ``grace`` s."""
    pids = sandbox_pids(netns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = sandbox_pids(netns)
    for pid in sandbox_pids(netns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_limits(sandbox_dir: Path) -> None:
    """Remove the sandbox's cgroup (killing what is left in it) and unmount its file
    systems: the /tmp, /dev/shm, /var/tmp and files tmpfs and the workdir's loop mount (its loop device
    detached; the image stays for a later start). Best effort: failures are logged.
    Idempotent."""
    from openshell.supervisor import cgroups, mounts

    cg = cgroups.Cgroup.load(str(sandbox_dir))
    if cg is not None:
        try:
            cg.remove()
            (sandbox_dir / cgroups.STATE_FILE).unlink(missing_ok=True)
        except (cgroups.CgroupError, OSError) as exc:
            log.warning("event=cgroup_remove_failed dir=%s reason=%s", sandbox_dir, exc)
    for name in mounts.SCRATCH_DIRS:
        try:
            mounts.unmount_tmp(str(sandbox_dir / name))
        except OSError as exc:
            log.warning("event=tmp_unmount_failed dir=%s reason=%s", sandbox_dir / name, exc)
    try:
        mounts.unmount_tmp(str(sandbox_dir / mounts.FILES_DIR))
        mounts.unmount_workdir(str(sandbox_dir / "workdir"), str(sandbox_dir / mounts.WORKDIR_IMAGE))
    except OSError as exc:
        log.warning("event=workdir_unmount_failed dir=%s reason=%s", sandbox_dir, exc)


def cleanup_sandbox(sandbox_id: str, sandbox_dir: Path, keep_workdir: bool = False, keep_files: bool = False) -> None:
    """Kill the sandbox's processes, tear down its isolation layers, remove its files.

    :param sandbox_dir: the driver's per-sandbox directory (holds ``context.json``).
    :param keep_workdir: keep ``workdir/`` (the sandbox's ``/sandbox``) as a plain
        directory, copied out of its file system, and delete the rest (the image
        too, unless the copy failed).
    :param keep_files: remove no file at all (a stopped sandbox, started again later).
    """
    ctx_path = sandbox_dir / CONTEXT_FILE
    ctx = IsolationContext(sandbox_id=sandbox_id, policy={}, state_dir=str(sandbox_dir))
    try:
        ctx = IsolationContext(**json.loads(ctx_path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    if ctx.netns:
        kill_sandbox_processes(ctx.netns)
    remove_limits(sandbox_dir)
    try:
        # Deferred: the supervisor imports this module at start and loads the
        # launcher in a worker thread (main._preload) to overlap the gateway round trip.
        from openshell.supervisor.launcher import teardown_layers

        teardown_layers(ctx, list(REQUIRED_LAYERS))
    except Exception as exc:  # noqa: BLE001 - best effort; logged
        log.warning("event=teardown_failed sandbox=%s reason=%s", sandbox_id, exc)
    if keep_files or not sandbox_dir.exists():
        return
    if keep_workdir:
        from openshell.supervisor import mounts

        keep = {"workdir"}
        try:
            mounts.extract_workdir(str(sandbox_dir))
        except OSError as exc:
            keep.add(mounts.WORKDIR_IMAGE)
            log.warning("event=workdir_extract_failed sandbox=%s reason=%s", sandbox_id, exc)
        for child in sandbox_dir.iterdir():
            if child.name not in keep:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    else:
        shutil.rmtree(sandbox_dir, ignore_errors=True)
