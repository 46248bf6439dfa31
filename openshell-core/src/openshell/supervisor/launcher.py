"""The child launcher: the ONE way any process enters a sandbox (DESIGN.md §3–4).

The supervisor is multi-threaded, so isolation is never applied in a
``preexec_fn``. :func:`spawn` starts ``python -I -m openshell.supervisor.launcher``
— a fresh, single-threaded process — and hands it a :class:`LaunchSpec` as JSON
over an inherited pipe (never argv or the environment: the spec may carry
secrets). ``spawn`` forks it inside the sandbox's PID, IPC, UTS and cgroup
namespaces (``sandbox_ns``), so it is born there. The launcher then applies, in order:

0. ``cgroup``: join the sandbox's cgroup (``cgroups.join``) before anything
   else, so this process and all it forks count against the sandbox's limits;
1. ``tty``: ``setsid`` + ``TIOCSCTTY`` on stdin (PTY sessions);
   ``RLIMIT_CORE`` 0/0 and not dumpable, so the root phase cannot leak a core;
2. layers with ``order < MOUNT_NS_ORDER`` (netns: ``setns``);
3. mount namespace: ``unshare(CLONE_NEWNS)``, ``/`` made rprivate, namespace
   file mounts (``/run/netns``) removed, bind mounts, a private ``/proc`` for the
   sandbox's PID namespace when the kernel allows;
4. layers' optional ``prepare_in_child(ctx)`` as root (Landlock opens its paths
   here: POLICY §4 "opened as root before the privilege drop");
5. drop to the sandbox user (POLICY §5): bounding set and ambient caps cleared,
   ``setgroups([])``, ``setresgid``, ``setresuid``; ``setuid(0)`` must then fail;
   ``no_new_privs``; not dumpable;
6. layers with ``order > USER_DROP_ORDER`` in order (Landlock, then seccomp last);
   with ``LaunchSpec.notify_fd`` the seccomp layer also hands its user-notification
   listener to the supervisor's connect attribution over that inherited socket;
7. ``chdir(cwd)``, ``execve`` with exactly ``env``.

Any failure prints one line ``openshell-launcher: <step>: <reason>`` on stderr
and exits 126 without exec (fail closed). A command that is not found at the
final exec exits 127, like a shell, since isolation was complete by then.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import logging
import os
import resource
import signal
import stat
import subprocess
import sys
import termios
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from openshell.plugin.kinds import (
    MOUNT_NS_ORDER,
    USER_DROP_ORDER,
    IsolationContext,
    IsolationError,
    IsolationLayer,
)
from openshell.supervisor import cgroups, nsutil, users
from openshell.supervisor.mounts import FILES_SOURCE, TMPFS_SOURCE, WORKDIR_IMAGE, Mount, loop_backing_file

if TYPE_CHECKING:
    from openshell.supervisor.sandbox_ns import SandboxNamespaces

log = logging.getLogger("openshell.supervisor.launcher")

EXIT_LAUNCH_FAILED = 126
EXIT_NOT_FOUND = 127
DEFAULT_LAYERS: tuple[str, ...] = ("netns", "landlock", "seccomp")

# prctl(2) options
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_MS_NOEXEC = 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


# --------------------------------------------------------------------------- the spec


@dataclass
class LaunchSpec:
    """Everything the launcher needs to start one sandboxed process.

    :ivar ctx: the sandbox's isolation context (after ``prepare_layers``).
    :ivar argv: program and arguments; ``argv[0]`` is looked up on ``env["PATH"]``.
    :ivar env: the exact environment of the program; nothing is inherited.
    :ivar cwd: working directory inside the sandbox.
    :ivar mounts: bind mounts applied in the sandbox's private mount namespace.
    :ivar layers: names of the isolation layers to apply; each is required.
    :ivar tty: start a new session and make stdin (a PTY) the controlling terminal.
    :ivar cgroup: the ``cgroup.procs`` files of the sandbox's cgroup, joined first.
    :ivar notify_fd: the caller's fd of a unix socket to the supervisor's
        connect attribution (inherited by the launcher at the same number), or -1.
        The seccomp layer sends its listener on it.
    """

    ctx: IsolationContext
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/sandbox"
    mounts: list[Mount] = field(default_factory=list)
    layers: list[str] = field(default_factory=lambda: list(DEFAULT_LAYERS))
    tty: bool = False
    cgroup: list[str] = field(default_factory=list)
    notify_fd: int = -1

    def to_json(self) -> str:
        """Serialise to JSON (the wire form between :func:`spawn` and the launcher)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> LaunchSpec:
        """Parse :meth:`to_json` output. Raises ``ValueError``/``TypeError`` on a malformed spec."""
        data = json.loads(text)
        ctx = IsolationContext(**data.pop("ctx"))
        mounts = [Mount(**m) for m in data.pop("mounts", [])]
        spec = cls(ctx=ctx, mounts=mounts, **data)
        if not spec.argv or not all(isinstance(a, str) for a in spec.argv):
            raise ValueError("argv must be a non-empty list of strings")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in spec.env.items()):
            raise ValueError("env must map strings to strings")
        return spec


# --------------------------------------------------------------------------- layer lookup


def layer_class(name: str, *, whole_registry: bool = True) -> type[IsolationLayer]:
    """Return the isolation layer class registered as ``name`` (fail closed).

    :param whole_registry: use the process-wide registry (the supervisor, where it
        is loaded already); False loads only that one plugin (the launcher, which
        must start fast and import nothing it does not need).
    :raises openshell.plugin.loader.PluginError: not installed, disabled or broken.
    """
    from openshell.plugin import loader

    if whole_registry:
        return loader.get_registry().require("isolation", name)
    return loader.select("isolation", name)


_selected: dict[str, type[IsolationLayer]] = {}


def supervisor_layer_class(name: str) -> type[IsolationLayer]:
    """The isolation layer class ``name`` for :func:`prepare_layers`/:func:`teardown_layers`.

    The process-wide registry when something already loaded it (the gateway,
    tests that register layers by hand); otherwise only that plugin is loaded
    with ``loader.select`` and remembered for the process's life, so a
    supervisor never imports the agent, inference and driver plugins it does not
    use (create-to-READY). Fail closed either way.

    :raises openshell.plugin.loader.PluginError: not installed, disabled or broken.
    """
    from openshell.plugin import loader

    registry = loader.loaded_registry()
    if registry is not None:
        return registry.require("isolation", name)
    cls = _selected.get(name)
    if cls is None:
        cls = _selected[name] = loader.select("isolation", name)
    return cls


def _ordered(layers: Iterable[IsolationLayer]) -> list[IsolationLayer]:
    return sorted(layers, key=lambda layer: layer.order)


def prepare_layers(ctx: IsolationContext, layers: Sequence[str]) -> list[IsolationLayer]:
    """Run each layer's ``prepare(ctx)`` in launch order, as root in the supervisor.

    On failure the layers already prepared are torn down (reverse order) and the
    error is raised.

    :returns: the layer instances, in order.
    :raises IsolationError: a layer is missing/broken or its ``prepare`` failed.
    """
    try:
        instances = _ordered(supervisor_layer_class(n)() for n in layers)
    except Exception as exc:
        raise IsolationError(f"isolation layer unavailable: {exc}") from exc
    done: list[IsolationLayer] = []
    try:
        for layer in instances:
            layer.prepare(ctx)
            done.append(layer)
    except BaseException as exc:
        for layer in reversed(done):
            try:
                layer.teardown(ctx)
            except Exception:
                log.exception("event=teardown_failed layer=%s sandbox=%s", layer.name, ctx.sandbox_id)
        if isinstance(exc, IsolationError):
            raise
        raise IsolationError(f"{layer.name}: {exc}") from exc
    return instances


def teardown_layers(ctx: IsolationContext, layers: Sequence[str]) -> None:
    """Run each layer's ``teardown(ctx)`` in reverse launch order. Idempotent.

    Every layer is tried even when one fails; failures are logged, and the
    first one is raised as ``IsolationError`` at the end.
    """
    first: BaseException | None = None
    instances: list[IsolationLayer] = []
    for n in layers:
        try:
            instances.append(supervisor_layer_class(n)())
        except Exception as exc:  # noqa: BLE001
            first = first or exc
            log.error("event=teardown_failed layer=%s sandbox=%s error=%r", n, ctx.sandbox_id, str(exc))
    for layer in reversed(_ordered(instances)):
        try:
            layer.teardown(ctx)
        except Exception as exc:  # noqa: BLE001
            first = first or exc
            log.error("event=teardown_failed layer=%s sandbox=%s error=%r", layer.name, ctx.sandbox_id, str(exc))
    if first is not None:
        raise IsolationError(f"teardown incomplete for sandbox {ctx.sandbox_id}: {first}")


# --------------------------------------------------------------------------- supervisor side


def launcher_argv(spec_fd: int) -> list[str]:
    """The command line of the launcher process (``-I``: no user site, no cwd on sys.path,
    no PYTHON* variables — nothing outside the installation influences it)."""
    return [sys.executable, "-I", "-m", "openshell.supervisor.launcher", "--spec-fd", str(spec_fd)]


def spawn(
    spec: LaunchSpec,
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    namespaces: SandboxNamespaces | None = None,
) -> subprocess.Popen:
    """Start ``spec.argv`` inside the sandbox through the launcher.

    Safe to call from any thread of the supervisor (no ``preexec_fn``). The
    spec travels over a pipe inherited as the only extra fd.

    :param stdin, stdout, stderr: as for ``subprocess.Popen`` (PIPE, a file, an fd, None).
    :param namespaces: the sandbox's PID/IPC/UTS/cgroup namespaces; the launcher
        is forked inside them (``SandboxNamespaces.entered``), so it and all it
        starts share them with the sandbox's other processes. None: the
        supervisor's own (tests of the launcher alone).
    :raises openshell.supervisor.sandbox_ns.SandboxNamespacesError: the sandbox's
        namespaces are gone (it is stopping); nothing was started.
    :returns: the launcher's ``Popen``; it *becomes* the program on success, so
        its pid and exit status are the program's. Exit 126 with one stderr line
        ``openshell-launcher: <step>: <reason>`` means isolation failed and
        nothing ran.
    """
    payload = spec.to_json().encode()
    read_fd, write_fd = os.pipe()
    try:
        with namespaces.entered() if namespaces is not None else contextlib.nullcontext():
            proc = subprocess.Popen(
                launcher_argv(read_fd),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(read_fd,) if spec.notify_fd < 0 else (read_fd, spec.notify_fd),
                env={},
                cwd="/",
                # Own process group, so stopping a session stops everything it started;
                # a tty launch makes its own session in the launcher instead.
                start_new_session=not spec.tty,
            )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
    except BrokenPipeError:
        pass  # the launcher died early; its exit status tells the caller
    finally:
        os.close(write_fd)
    return proc


# --------------------------------------------------------------------------- launcher side


class _Failed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


def _fail(step: str, reason: str, code: int = EXIT_LAUNCH_FAILED) -> NoReturn:
    line = f"openshell-launcher: {step}: {' '.join(str(reason).split())}\n"
    try:
        os.write(2, line.encode(errors="replace"))
    finally:
        os._exit(code)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    return str(exc) or type(exc).__name__


def _prctl(option: int, arg2: int = 0, what: str = "prctl") -> None:
    if _libc.prctl(option, arg2, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _read_spec(fd: int) -> LaunchSpec:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return LaunchSpec.from_json(b"".join(chunks))


def _attach_tty() -> None:
    """New session; stdin (a PTY) becomes its controlling terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _mount_namespace(mounts: Sequence[Mount], reachable: Collection[str] = ()) -> None:
    """Private mount namespace with the spec's bind mounts (DESIGN §4 ``local`` driver).

    ``/`` is made rprivate first so nothing done here propagates to the host.
    Missing mount points are created on the host as root (dirs 0755, files 0644).
    The host-side mounts of every sandbox's own file systems (``_is_sandbox_fs``)
    leave this namespace: other sandboxes' before the binds, this one's after
    them (through fds: a bind over ``/tmp`` may hide their paths by then), so
    their host paths under the gateway's state directory never show in the
    sandbox's ``/proc/self/mountinfo``. Last, every mount the sandbox cannot reach
    anyway (``_drop_unreachable_mounts``: not on the way to a ``reachable`` path
    nor to a bind target) leaves too, so the host's other mounts (other container
    runtimes' sandboxes and root file systems, removable media, ...) do not show.
    """
    nsutil.unshare(nsutil.CLONE_NEWNS)
    nsutil.mount("none", "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
    wanted = [os.path.realpath(m.source) for m in mounts]
    lines = _mountinfo_fields()  # ~7 lines per sandbox on the machine: read and sorted once
    sandbox_fs = [m.point for m in lines if _is_sandbox_fs(m.fstype, m.source)]
    own = {point for point in sandbox_fs if any(_under(w, point) for w in wanted)}
    _drop_namespace_mounts(lines, [point for point in sandbox_fs if point not in own])
    # Open every source first: a mount over /tmp must not hide a later source
    # that lives under /tmp. Binding from /proc/self/fd/N uses the opened inode.
    sources: list[tuple[Mount, int]] = []
    roots: list[int] = []
    try:
        for m in mounts:
            sources.append((m, os.open(m.source, os.O_PATH | os.O_CLOEXEC)))
        for point in own:
            roots.append(os.open(point, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY))
        for m, fd in sources:
            src_is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
            if not os.path.lexists(m.target):
                if src_is_dir:
                    os.makedirs(m.target, mode=0o755, exist_ok=True)
                    os.chmod(m.target, 0o755)
                else:
                    os.makedirs(os.path.dirname(m.target) or "/", mode=0o755, exist_ok=True)
                    os.close(os.open(m.target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            nsutil.mount(f"/proc/self/fd/{fd}", m.target, None, nsutil.MS_BIND | nsutil.MS_REC)
            # Remount to set per-mount flags; nosuid/nodev cost nothing and close
            # setuid/device tricks through sandbox-writable trees.
            flags = nsutil.MS_BIND | nsutil.MS_REMOUNT | nsutil.MS_NOSUID | nsutil.MS_NODEV
            if m.read_only:
                flags |= nsutil.MS_RDONLY
            nsutil.mount("none", m.target, None, flags)
        # The binds hold their file systems; the host-side mounts can go.
        for fd in roots:
            nsutil.umount(f"/proc/self/fd/{fd}", nsutil.MNT_DETACH)
    finally:
        for fd in roots:
            os.close(fd)
        for _, fd in sources:
            os.close(fd)
    # Last: this process may run from the supervisor's runtime (docker driver); what
    # it has mapped stays usable once the mounts are detached, and it imports nothing more.
    _drop_mounts_under(SUPERVISOR_ONLY_MOUNTS)
    _drop_unreachable_mounts([*reachable, *(m.target for m in mounts)])
    _private_proc()


def _under(path: str, point: str) -> bool:
    return path == point or path.startswith(point.rstrip("/") + "/")


def _is_sandbox_fs(fstype: str, source: str) -> bool:
    """True for a file system of a sandbox's own, mounted on the host under its state
    directory (``mounts``): a ``/tmp`` or files tmpfs, or a workdir loop mount (told
    by the name of its backing file)."""
    if fstype == "tmpfs":
        return source in (TMPFS_SOURCE, FILES_SOURCE)
    if fstype == "ext4" and source.startswith("/dev/loop"):
        backing = loop_backing_file(source)
        return backing is not None and os.path.basename(backing.removesuffix(" (deleted)")) == WORKDIR_IMAGE
    return False


class _MountLine(NamedTuple):
    point: str
    fstype: str
    source: str
    mount_id: int
    parent_id: int


def _mountinfo_fields() -> list[_MountLine]:
    """Each line of ``/proc/self/mountinfo``, in order (parents before the mounts on
    them). Octal escapes in the mount point are decoded."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            try:
                dash = fields.index(b"-")
                fstype, source = fields[dash + 1], fields[dash + 2]
            except (ValueError, IndexError):
                continue
            point = fields[4].decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")
            out.append(_MountLine(point, fstype.decode(errors="replace"), source.decode(errors="replace"), int(fields[0]), int(fields[1])))
    return out


#: Mounts only the supervisor uses, made by a container engine (``docker`` driver): its
#: relocatable runtime (binds of the gateway host's interpreter, standard library and
#: package directories) and the directory of its SSH socket. The sandbox needs neither,
#: and their bind roots name host paths (the gateway's installation, ``/run/openshell``).
SUPERVISOR_ONLY_MOUNTS = ("/.openshell", "/run/openshell")
#: Files a container engine binds from its own data directory (``docker``: under
#: ``<data root>/containers/<container id>/``), shown by that host path in mountinfo.
#: The sandbox gets its own /etc/hosts; hostname and DNS servers are the image's
#: (its host name is its UTS namespace's; DNS goes through the proxy).
ENGINE_FILE_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def _drop_mounts_under(points: Collection[str]) -> None:
    """Detach, in this (private) mount namespace, every mount at or under one of ``points``
    (deepest first). A mount already gone (detached with its parent) is skipped."""
    _drop_points([m.point for m in _mountinfo_fields() if any(_under(m.point, p) for p in points)])


#: mount points kept whatever the policy says (and everything under them): the kernel's
#: and the devices' file systems programs expect (/proc is replaced by a private one)
_ALWAYS_KEPT = ("/proc", "/sys", "/dev")


def _policy_paths(ctx: IsolationContext) -> list[str]:
    """Every path the sandbox's policy lets it reach (filesystem ``read_only`` and
    ``read_write``, baseline included by the parser; ``/sandbox``), as written and
    with symlinks resolved (``/lib`` → ``/usr/lib``)."""
    fs = ctx.policy.get("filesystem") or {}
    paths = [str(p) for p in [*(fs.get("read_only") or ()), *(fs.get("read_write") or ()), "/sandbox"]]
    return sorted({*paths, *(os.path.realpath(p) for p in paths)})


def _drop_unreachable_mounts(reachable: Collection[str]) -> None:
    """Detach, in this (private) mount namespace, every mount the sandbox has no use
    for: all but ``/``, those under ``_ALWAYS_KEPT``, and those at, under or above a
    ``reachable`` path (an ancestor mount holds the path). Landlock refuses the rest
    anyway; gone, they no longer name the host's other mounts in mountinfo."""

    def wanted(point: str) -> bool:
        if point == "/" or any(_under(point, k) for k in _ALWAYS_KEPT):
            return True
        return any(_under(point, r) or _under(r, point) for r in reachable)

    _drop_points([m.point for m in _mountinfo_fields() if not wanted(m.point)])


#: where :func:`_gather` stacks, for a moment, the tmpfs it moves dropped mounts under:
#: always a mount point, never a target (``_ALWAYS_KEPT``), replaced later anyway
_GATHER_POINT = "/proc"
_MS_MOVE = 0x2000
#: fewer targets than this are unmounted one by one
_GATHER_MIN = 8


def _drop_points(targets: Sequence[str]) -> None:
    """Detach each of ``targets`` (in mountinfo order: deepest last, so detached first),
    last first. A mount already gone (detached with its parent) is skipped.

    Many are gathered first (:func:`_gather`): every ``umount2`` waits for an
    expedited RCU grace period (0.15–0.3 ms on a 2-core VM), so one by one the
    ~7 host-side mounts of each other sandbox cost a launcher ~0.3 s with 300
    running, on every start and every ``exec``.
    """
    if len(targets) >= _GATHER_MIN:
        targets = _gather(targets)
    for point in reversed(targets):
        try:
            nsutil.umount(point, nsutil.MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise


def _gather(targets: Sequence[str]) -> list[str]:
    """Move each of ``targets`` (``MS_MOVE``: no grace period) under one fresh tmpfs
    stacked on :data:`_GATHER_POINT`, then detach that tmpfs with a single
    ``umount2``, which takes them all along. Returns the targets left for the caller
    to unmount one by one (in ``targets``' order): those under the gather point,
    those a move refused, or all of them when the tmpfs cannot be mounted. A path
    that no longer resolves (detached with its parent) is skipped, as ``_drop_points`` does.
    """
    try:
        nsutil.mount(
            "openshell-drop", _GATHER_POINT, "tmpfs", nsutil.MS_NOSUID | nsutil.MS_NODEV | _MS_NOEXEC, f"size=64k,nr_inodes={len(targets) + 16},mode=0700"
        )
    except OSError:
        return list(targets)
    left: list[str] = []
    try:
        for slot, point in enumerate(reversed(targets)):
            if _under(point, _GATHER_POINT):  # hidden by the stack now
                left.append(point)
                continue
            holder = f"{_GATHER_POINT}/{slot}"
            try:
                if stat.S_ISDIR(os.stat(point).st_mode):  # a move needs a slot of the same kind
                    os.mkdir(holder, 0o700)
                else:
                    os.close(os.open(holder, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                nsutil.mount(point, holder, None, _MS_MOVE)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    left.append(point)
    finally:
        nsutil.umount(_GATHER_POINT, nsutil.MNT_DETACH)
    return left[::-1]


def _drop_namespace_mounts(lines: Sequence[_MountLine], sandbox_fs: Collection[str]) -> None:
    """Remove, in this (private) mount namespace, every namespace file bind (``nsfs``),
    the ``/run/netns`` mount, the mount points ``sandbox_fs`` (the other sandboxes' own
    file systems, ``_is_sandbox_fs``: ``/tmp``, files, workdir), and a container
    engine's file binds (``ENGINE_FILE_MOUNTS``). ``lines``: the mount table read
    after ``unshare`` (:func:`_mountinfo_fields`).

    They name every sandbox's network namespace and state directory on the machine
    (and any other runtime's); the sandbox must see neither them nor their names in
    ``/proc/self/mountinfo``. The host keeps its mounts: ``/`` is rprivate by now.
    A mount already gone (detached with its parent) is skipped.
    """
    netns_dirs = {m.mount_id for m in lines if m.point == nsutil.NETNS_DIR}
    # A namespace file mounted on the /run/netns mount leaves with it (one per sandbox).
    targets = [m.point for m in lines if m.fstype == "nsfs" and m.parent_id not in netns_dirs]
    targets += [m.point for m in lines if m.mount_id in netns_dirs]
    others = {*sandbox_fs, *ENGINE_FILE_MOUNTS}
    targets += [m.point for m in lines if m.point in others]
    _drop_points(targets)


def _nspid_depth(pid: str) -> int:
    """How many PID namespaces, from the ``/proc`` mount's down, ``pid`` has a pid in
    (the ``NSpid`` line of its status; readable without ptrace access)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return len(line.split()) - 1
    return 1


def _in_own_pid_namespace() -> bool:
    """True when this process is in a PID namespace below that of pid 1 of the
    ``/proc`` mounted now (the supervisor's), i.e. ``spawn`` started it in the
    sandbox's. Read before the new ``/proc`` is mounted; an error means no."""
    try:
        return _nspid_depth("self") > _nspid_depth("1")
    except OSError:
        return False


def _private_proc() -> None:
    """Mount a fresh procfs over ``/proc`` for this process's PID namespace (hardening).

    With the host's /proc the sandbox could list every host process and read
    their command lines. In the sandbox's own PID namespace (``sandbox_ns``) a new
    proc instance shows only the sandbox's processes, all of them, so two
    ``sandbox exec`` sessions see each other as in a container. Without one
    (the launcher used on its own) ``hidepid=invisible`` (kernel >= 5.8) hides
    the processes the caller may not ptrace-read instead. Not required by
    POLICY, so a kernel or container that refuses the mount keeps the shared
    /proc (Landlock still applies).
    """
    flags = nsutil.MS_NOSUID | nsutil.MS_NODEV | _MS_NOEXEC
    options = None if _in_own_pid_namespace() else "hidepid=invisible"
    try:
        nsutil.mount("proc", "/proc", "proc", flags, options)
    except OSError as exc:
        log.info("event=private_proc_unavailable reason=%r", exc.strerror)


def _resolve_ids(ctx: IsolationContext) -> tuple[int, int]:
    if ctx.uid > 0 and ctx.gid > 0:
        return ctx.uid, ctx.gid
    if ctx.uid == 0 or ctx.gid == 0:
        raise users.UserError("context asks for uid/gid 0; the sandbox never runs as root")
    return users.ids_for_policy(ctx.policy)


def _cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 63


def _status_fields() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _drop_privileges(uid: int, gid: int) -> None:
    """POLICY §5: no capabilities left anywhere, no way back to root.

    The bounding set is dropped while we still hold CAP_SETPCAP; setresuid away
    from 0 then clears the permitted/effective sets (no SECBIT_KEEP_CAPS).
    """
    for cap in range(_cap_last() + 1):
        _prctl(_PR_CAPBSET_DROP, cap, f"drop capability {cap} from the bounding set")
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, "clear ambient capabilities")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PermissionError(1, "setuid(0) succeeded after the drop")
    status = _status_fields()
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status.get(key, "0"), 16) != 0:
            raise PermissionError(1, f"{key} is {status[key]} after the drop")
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
    # The uid change reset dumpability to fs.suid_dumpable; set it again.
    _prctl(_PR_SET_DUMPABLE, 0, "not dumpable")


def _load_layers(names: Sequence[str]) -> list[IsolationLayer]:
    layers = []
    for name in names:
        try:
            layers.append(layer_class(name, whole_registry=False)())
        except Exception as exc:
            raise _Failed(f"load layer {name}", _reason(exc)) from exc
    return _ordered(layers)


def _join_cgroup(procs_files: Sequence[str]) -> None:
    """Step 0: enter the sandbox's cgroup (resource limits) before loading or forking anything."""
    try:
        cgroups.join(procs_files)
    except Exception as exc:
        raise _Failed("cgroup", _reason(exc)) from exc


def run(spec: LaunchSpec) -> NoReturn:
    """Apply the isolation in ``spec`` to this process and exec its program.

    Never returns: execs, or exits 126 via ``_fail`` (127: program not found).
    """
    ctx = spec.ctx
    _join_cgroup(spec.cgroup)
    if spec.notify_fd >= 0:
        # seccomp step: where the seccomp layer hands its listener to the supervisor.
        ctx.extra.setdefault("seccomp", {})["notify_fd"] = spec.notify_fd
    layers = _load_layers(spec.layers)
    step = "init"
    try:
        if spec.tty:
            step = "tty"
            _attach_tty()
        step = "rlimit"
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _prctl(_PR_SET_DUMPABLE, 0, "not dumpable")
        for layer in layers:
            if layer.order < MOUNT_NS_ORDER:
                step = f"layer {layer.name}"
                layer.apply_in_child(ctx)
        # Before the mount namespace: the new /tmp may hide the installation
        # (a venv or checkout under /tmp), so nothing may be imported after it.
        step = "resolve user"
        uid, gid = _resolve_ids(ctx)
        step = "mount namespace"
        _mount_namespace(spec.mounts, _policy_paths(ctx))
        for layer in layers:
            if MOUNT_NS_ORDER <= layer.order < USER_DROP_ORDER:
                step = f"layer {layer.name}"
                layer.apply_in_child(ctx)
        for layer in layers:
            if layer.order > USER_DROP_ORDER and hasattr(layer, "prepare_in_child"):
                step = f"layer {layer.name} (as root)"
                layer.prepare_in_child(ctx)
        step = "drop privileges"
        _drop_privileges(uid, gid)
        # Python ignores SIGPIPE/SIGXFSZ; an ignored signal survives execve.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        for layer in layers:
            if layer.order > USER_DROP_ORDER:
                step = f"layer {layer.name}"
                layer.apply_in_child(ctx)
        step = "close fds"
        # After the layers (Landlock holds its ruleset fd until restrict_self);
        # nothing but stdio may reach the program.
        os.closerange(3, 1 << 20)
        step = "chdir"
        os.chdir(spec.cwd)
    except _Failed as exc:
        _fail(exc.step, exc.reason)
    except BaseException as exc:  # noqa: BLE001 - fail closed on anything
        _fail(step, _reason(exc))
    try:
        os.execvpe(spec.argv[0], spec.argv, spec.env)
    except FileNotFoundError:
        _fail("exec", f"{spec.argv[0]}: command not found", EXIT_NOT_FOUND)
    except BaseException as exc:  # noqa: BLE001
        _fail("exec", f"{spec.argv[0]}: {_reason(exc)}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``python -m openshell.supervisor.launcher --spec-fd N``."""
    try:
        parser = argparse.ArgumentParser(prog="openshell-launcher", add_help=False)
        parser.add_argument("--spec-fd", type=int, required=True)
        args = parser.parse_args(argv)
        spec = _read_spec(args.spec_fd)
    except SystemExit:
        _fail("arguments", "usage: python -m openshell.supervisor.launcher --spec-fd FD")
    except BaseException as exc:  # noqa: BLE001
        _fail("read spec", _reason(exc))
    try:
        run(spec)
    except _Failed as exc:
        _fail(exc.step, exc.reason)
    except BaseException as exc:  # noqa: BLE001
        _fail("launch", _reason(exc))


if __name__ == "__main__":
    main()


__all__ = [
    "DEFAULT_LAYERS",
    "EXIT_LAUNCH_FAILED",
    "EXIT_NOT_FOUND",
    "LaunchSpec",
    "Mount",
    "layer_class",
    "prepare_layers",
    "spawn",
    "supervisor_layer_class",
    "teardown_layers",
]
