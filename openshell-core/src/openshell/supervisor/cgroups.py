"""One cgroup per sandbox: create, limit, join, read events, remove (cgroup v1 and v2).

The kernel enforces a sandbox's process, memory and CPU limits through a cgroup
that every process of the sandbox joins before it can fork (the child launcher
does it first thing). Which hierarchy is used is detected from
``/proc/self/mountinfo``:

- **v2** (unified, most current distributions): a ``cgroup2`` mount whose
  ``cgroup.controllers`` offers ``memory`` and ``pids``. The sandbox's cgroup is
  ``<mount>/openshell/<sandbox id>``, with the controllers enabled in the
  ``subtree_control`` of the mount root and of ``openshell/``. Files:
  ``memory.max``, ``memory.swap.max`` (0), ``pids.max``, ``cpu.max``; events in
  ``memory.events`` and ``pids.events``.
- **v1** (legacy and hybrid, e.g. Debian with ``systemd.unified_cgroup_hierarchy=0``):
  one directory per controller, ``<controller mount>/<our own cgroup>/openshell/<id>``
  — nested under the supervisor's own cgroup so limits the host put on it still
  apply. Files: ``memory.limit_in_bytes`` (+ ``memory.memsw.limit_in_bytes``
  when swap accounting is on), ``pids.max``, ``cpu.cfs_period_us`` /
  ``cpu.cfs_quota_us``; events in ``memory.oom_control`` and ``pids.events``.

The paths of a sandbox's cgroup are kept in ``<state dir>/cgroup.json`` so that
cleanup after a crashed supervisor removes exactly them. :func:`join` is what
the launcher calls; the module imports only the standard library.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

#: controllers a sandbox cannot start without (fail closed); cpu only when a CPU limit is set
REQUIRED = ("memory", "pids")
CONTROLLERS = ("memory", "pids", "cpu")
PARENT_NAME = "openshell"
STATE_FILE = "cgroup.json"
CFS_PERIOD_US = 100_000
REMOVE_TIMEOUT = 5.0  # seconds to wait for a cgroup's processes to die before rmdir gives up


class CgroupError(Exception):
    """The cgroup could not be set up; the message names the path and the cause."""


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Hierarchy:
    """Where sandbox cgroups go.

    :ivar version: 1 or 2.
    :ivar parents: v2: ``{"unified": <mount>/openshell}``; v1: controller →
        ``<mount>/<own path>/openshell`` (controllers sharing a mount share a path).
    :ivar roots: v2 only: the mount root, whose ``subtree_control`` must enable the controllers.
    """

    version: int
    parents: dict[str, str]
    roots: tuple[str, ...] = ()


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """``(root, mountpoint, fstype, super options)`` of every cgroup mount."""
    out = []
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
                continue
            root, point = (_unescape(x) for x in fields[3:5])
            out.append((root, point, rest[0], set(rest[2].split(","))))
    return out


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as controller → path (``""`` is the v2 entry)."""
    paths = {}
    with open(proc_cgroup) as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                for ctl in parts[1].split(",") if parts[1] else [""]:
                    paths[ctl] = parts[2]
    return paths


def _inside(mount_root: str, own: str) -> str:
    """``own`` (a cgroup path) relative to a mount whose root is ``mount_root``."""
    if mount_root in ("/", "") or not own.startswith(mount_root):
        return own.lstrip("/")
    return own[len(mount_root) :].lstrip("/")


def detect(mountinfo: str = "/proc/self/mountinfo", proc_cgroup: str = "/proc/self/cgroup") -> Hierarchy:
    """Find the hierarchy to use: v2 when its mount offers memory and pids, else v1.

    :raises CgroupError: neither has the memory and pids controllers.
    """
    mounts = _mounts(mountinfo)
    for _root, point, fstype, _opts in mounts:
        if fstype != "cgroup2":
            continue
        try:
            with open(os.path.join(point, "cgroup.controllers")) as f:
                available = set(f.read().split())
        except OSError:
            continue
        if all(c in available for c in REQUIRED):
            return Hierarchy(2, {"unified": os.path.join(point, PARENT_NAME)}, (point,))
    own = _own_paths(proc_cgroup)
    parents: dict[str, str] = {}
    for root, point, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for ctl in CONTROLLERS:
            if ctl in opts and ctl not in parents:
                parents[ctl] = os.path.join(point, _inside(root, own.get(ctl, "/")), PARENT_NAME)
    missing = [c for c in REQUIRED if c not in parents]
    if missing:
        raise CgroupError(f"no cgroup hierarchy offers the {' and '.join(missing)} controller(s); resource limits cannot be enforced")
    return Hierarchy(1, parents)


def own(mountinfo: str = "/proc/self/mountinfo", proc_cgroup: str = "/proc/self/cgroup") -> Cgroup:
    """The cgroup this process is in (e.g. its container's), to read its counters.

    For the ``docker`` driver: the container runtime enforces the limits on the
    container's cgroup; the supervisor only reads its OOM-kill and refused-fork
    counters. Never :meth:`Cgroup.remove` it.

    :raises CgroupError: no hierarchy with the memory and pids controllers.
    """
    h = detect(mountinfo, proc_cgroup)
    if h.version == 1:
        return Cgroup(1, {ctl: os.path.dirname(parent) for ctl, parent in h.parents.items()})
    mine = _own_paths(proc_cgroup).get("", "/")
    for root, point, fstype, _opts in _mounts(mountinfo):
        if fstype == "cgroup2" and point == h.roots[0]:
            return Cgroup(2, {"unified": os.path.join(point, _inside(root, mine)).rstrip("/") or "/"})
    return Cgroup(2, {"unified": h.roots[0]})


# --------------------------------------------------------------------------- one sandbox's cgroup


@dataclass
class Events:
    """Counters the kernel keeps for a cgroup (monotonic while it exists).

    :ivar oom_kills: processes killed because the memory limit was reached.
    :ivar pids_max: forks refused because the process limit was reached.
    """

    oom_kills: int = 0
    pids_max: int = 0


@dataclass
class Cgroup:
    """A sandbox's cgroup.

    :ivar version: 1 or 2.
    :ivar dirs: controller → directory (v2: the one ``"unified"`` directory).
    """

    version: int
    dirs: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[str]:
        """The distinct directories (v1 controllers may share a mount)."""
        return sorted(set(self.dirs.values()))

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join."""
        return [os.path.join(d, "cgroup.procs") for d in self.paths()]

    def _dir(self, controller: str) -> str | None:
        return self.dirs.get("unified") if self.version == 2 else self.dirs.get(controller)

    def set_limits(self, *, memory: int | None = None, pids: int | None = None, cpu_milli: int | None = None) -> None:
        """Write the limits (None: leave the kernel's "unlimited").

        :param memory: bytes; swap beyond it is not allowed.
        :param pids: processes and threads.
        :param cpu_milli: millicores: ``cpu_milli * 100`` µs of CPU per 100 ms period.
        :raises CgroupError: a controller is missing or the kernel refused a value.
        """
        mem_dir, pids_dir, cpu_dir = self._dir("memory"), self._dir("pids"), self._dir("cpu")
        if cpu_milli is not None and cpu_dir is None:
            raise CgroupError("no cgroup cpu controller; a CPU limit cannot be enforced")
        quota = None if cpu_milli is None else cpu_milli * CFS_PERIOD_US // 1000
        if self.version == 2:
            if memory is not None:
                _write(mem_dir, "memory.max", str(memory))
                _write_if_present(mem_dir, "memory.swap.max", "0")
            if pids is not None:
                _write(pids_dir, "pids.max", str(pids))
            if quota is not None:
                _write(cpu_dir, "cpu.max", f"{quota} {CFS_PERIOD_US}")
            return
        if memory is not None:
            _write(mem_dir, "memory.limit_in_bytes", str(memory))
            # memsw is memory + swap: equal to the limit means no swap on top.
            _write_if_present(mem_dir, "memory.memsw.limit_in_bytes", str(memory))
        if pids is not None:
            _write(pids_dir, "pids.max", str(pids))
        if quota is not None:
            _write(cpu_dir, "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(cpu_dir, "cpu.cfs_quota_us", str(quota))

    def events(self) -> Events:
        """Read the OOM-kill and pids-limit counters (0 for a file that cannot be read)."""
        mem_dir, pids_dir = self._dir("memory"), self._dir("pids")
        mem_file = "memory.events" if self.version == 2 else "memory.oom_control"
        return Events(
            oom_kills=_counter(mem_dir, mem_file, "oom_kill"),
            pids_max=_counter(pids_dir, "pids.events", "max"),
        )

    def activity(self) -> tuple[int, int]:
        """``(memory charged in bytes, processes and threads now)``; -1 for a file that
        cannot be read.

        A cheap sign that something ran: allocating, writing or deleting a file
        (page cache and tmpfs pages are charged to the writer's cgroup), forking
        and an OOM kill all move one of them. Not exact (v1 charges memory in
        per-CPU batches), so it may only decide how soon to look again.
        """
        mem_dir, pids_dir = self._dir("memory"), self._dir("pids")
        mem_file = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        return _number(mem_dir, mem_file), _number(pids_dir, "pids.current")

    def pids(self) -> list[int]:
        """Pids of the processes in the cgroup (from every directory)."""
        found: set[int] = set()
        for path in self.procs_files():
            try:
                with open(path) as f:
                    found.update(int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def remove(self, timeout: float = REMOVE_TIMEOUT) -> None:
        """SIGKILL every process left in the cgroup and remove its directories
        (and ``openshell/`` when it is empty). Idempotent.

        :raises CgroupError: a directory is still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        busy = []
        for path in self.paths():
            while True:
                if not os.path.isdir(path):
                    break
                _kill_members(path)
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        busy.append(f"{path}: {exc.strerror}")
                        break
                    time.sleep(0.02)
            try:
                os.rmdir(os.path.dirname(path))  # the shared parent, once no sandbox uses it
            except OSError:
                pass
        if busy:
            raise CgroupError(f"cgroup not removed: {'; '.join(busy)}")

    # ------------------------------------------------------------------ persistence
    def save(self, state_dir: str) -> None:
        """Record the directories in ``<state_dir>/cgroup.json`` (for cleanup after a crash)."""
        path = os.path.join(state_dir, STATE_FILE)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"version": self.version, "dirs": self.dirs}, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: str) -> Cgroup | None:
        """The cgroup recorded by :meth:`save`, or None when there is none (or it is unreadable)."""
        try:
            with open(os.path.join(state_dir, STATE_FILE)) as f:
                data = json.load(f)
            dirs = {str(k): str(v) for k, v in data["dirs"].items()}
            return cls(int(data["version"]), dirs)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


@functools.cache
def detect_once() -> Hierarchy:
    """:func:`detect` with this process's files, done once per process and kept.

    Reading ``/proc/self/mountinfo`` costs ~4 µs per mount in the kernel, and the
    host's table holds ~7 per sandbox running (8 ms with 300). The ``local``
    driver's fork server calls this while it warms up, so the supervisors it
    forks (in its cgroup, on its mounts) inherit the answer.

    :raises CgroupError: as :func:`detect` (not kept: the next call tries again).
    """
    return detect()


def create(sandbox_id: str, hierarchy: Hierarchy | None = None) -> Cgroup:
    """Create (or reuse, after a crash) the cgroup of ``sandbox_id``.

    :param hierarchy: where; default: :func:`detect_once`.
    :raises CgroupError: detection failed, or a directory or ``subtree_control``
        write was refused (the message names the path).
    """
    if not sandbox_id or "/" in sandbox_id or sandbox_id in (".", ".."):
        raise CgroupError(f"sandbox id {sandbox_id!r} cannot name a cgroup")
    h = hierarchy or detect_once()
    try:
        if h.version == 2:
            parent = h.parents["unified"]
            for root in h.roots:
                _enable_controllers(root)
            _makedirs(parent)
            _enable_controllers(parent)
            path = os.path.join(parent, sandbox_id)
            _makedirs(path)
            return Cgroup(2, {"unified": path})
        dirs = {}
        for ctl, parent in h.parents.items():
            path = os.path.join(parent, sandbox_id)
            _makedirs(path)
            dirs[ctl] = path
        return Cgroup(1, dirs)
    except OSError as exc:
        raise CgroupError(f"cannot create the sandbox's cgroup: {exc.strerror} ({exc.filename})") from exc


def join(procs_files: Sequence[str], pid: int = 0) -> None:
    """Move ``pid`` (0: this process) into the cgroup whose ``cgroup.procs`` files these are.

    The launcher calls this before anything else, so every process of the
    sandbox — and everything it forks — is counted and limited.

    :raises OSError: the kernel refused (e.g. the cgroup was removed).
    """
    me = str(pid or os.getpid())
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, me.encode())
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- file helpers


def _makedirs(path: str) -> None:
    # A concurrent remove() may rmdir the shared parent between the two mkdirs
    # of makedirs (it removes it only when empty); a retry recreates it.
    for attempt in range(5):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == 4:
                raise


def _enable_controllers(path: str) -> None:
    """Enable memory/pids/cpu for the children of ``path`` (v2), as far as offered."""
    with open(os.path.join(path, "cgroup.controllers")) as f:
        available = set(f.read().split())
    try:
        with open(os.path.join(path, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
    except FileNotFoundError:
        enabled = set()
    wanted = [c for c in CONTROLLERS if c in available and c not in enabled]
    if wanted:
        with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
            f.write(" ".join(f"+{c}" for c in wanted))


def _write(directory: str | None, name: str, value: str) -> None:
    if directory is None:
        raise CgroupError(f"no cgroup controller for {name}")
    path = os.path.join(directory, name)
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(f"cannot set {path} to {value}: {exc.strerror}") from exc


def _write_if_present(directory: str | None, name: str, value: str) -> None:
    if directory is not None and os.path.exists(os.path.join(directory, name)):
        _write(directory, name, value)


def _counter(directory: str | None, name: str, key: str) -> int:
    """The value of line ``<key> <n>`` in a flat-keyed cgroup file (0 when absent)."""
    if directory is None:
        return 0
    try:
        with open(os.path.join(directory, name)) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
    except (OSError, ValueError):
        pass
    return 0


def _number(directory: str | None, name: str) -> int:
    """The single number in a cgroup file (-1 when absent or unreadable)."""
    if directory is None:
        return -1
    try:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return int(os.read(fd, 64))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return -1


def _kill_members(path: str) -> None:
    kill_file = os.path.join(path, "cgroup.kill")  # v2, Linux >= 5.14: the kernel does it atomically
    if os.path.exists(kill_file):
        try:
            with open(kill_file, "w") as f:
                f.write("1")
            return
        except OSError:
            pass
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


__all__ = ["CgroupError", "Cgroup", "Events", "Hierarchy", "create", "detect", "join"]
