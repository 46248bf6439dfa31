"""``sandbox upload`` / ``sandbox download``: tar streamed over an SSH exec channel (no rsync).

Upload: we build a tar stream of LOCAL (the files git would track when LOCAL is
in a git work tree, unless ``git_ignore=False``) and pipe it into
``tar -x`` running *inside* the sandbox through the child launcher, so it
writes as the sandbox user under Landlock. Download: ``tar -c`` runs inside
the sandbox and we extract its stream here.

Both sides refuse members that would escape the destination: absolute names,
``..`` components, symbolic or hard links whose target lies outside, and
members whose parent directory resolves outside (a link planted earlier in the
same archive). Our extractor refuses them itself (every byte from the sandbox
is hostile); for uploads we never put such a member in the stream, and the
sandbox's GNU tar independently refuses ``..`` members and strips leading
``/``. Permissions (mode & 0o777, less the local umask, as ``scp`` does) and
symlinks are preserved; ownership is not (files belong to whoever extracts
them); devices and FIFOs are skipped. The commands run in the sandbox set
``PATH=/usr/bin:/bin`` first, so a ``tar`` the sandbox planted earlier on its
``PATH`` (``/sandbox/.venv/bin``) is not the one that runs.

Layout: a directory's *contents* land in DEST (as ``tar -C LOCAL . | tar -C DEST -x``);
a single file lands as ``DEST/<its name>`` when DEST is a directory (or ends
with ``/``), else as DEST itself (as ``cp`` and ``scp`` name it).

LOCAL itself must not be a symlink (:func:`check_upload_source`): symlinks
travel as links, and one sent alone would point outside what is uploaded.
A local path too long for the kernel (a name over 255 bytes, a path over
4095) is an error naming it, for LOCAL, a path inside it and a download's
DEST alike. An upload the sandbox has no room for (``No space left on
device``, ``Disk quota exceeded``) raises :class:`OutOfSpace` naming the file
system that is full (the workdir: ``--disk``), its size and the fix.

A download is partial when tar inside the sandbox could not read some paths
(file modes, Landlock): tar skips them, still ends the archive and exits 1
or 2. We keep what arrived and return the skipped paths with tar's reasons
(:attr:`Stats.skipped`); the CLI turns that into a distinct exit code. A
failed download removes the directories it created for DEST while they are
still empty, and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Optional, cast

from openshell.resources import DEFAULTS

from openshell_cli.output import plural

CHUNK = 256 * 1024  # bytes per channel read/write
MAX_MEMBER_NAME = 4096
MAX_STDERR = 64 * 1024  # bytes of the remote tar's stderr kept (the rest is read and dropped)
MAX_REASON = 200  # characters of tar's message kept per skipped path
PROGRESS_EVERY = 0.1  # seconds between progress callbacks
MISSING_EXIT = 66  # exit status of the download wrapper when PATH does not exist (EX_NOINPUT)
NAME_MAX = 255  # bytes in one file name (Linux: ext4, xfs, btrfs, tmpfs)
PATH_MAX = 4096  # bytes in a path a system call takes, its terminating NUL included
SHOWN_PATH = 100  # characters of a path a message shows whole; a longer one is cut in the middle


class TransferError(RuntimeError):
    """An upload or download failed; the message is one line naming the cause and the fix."""


class UnsafeMember(TransferError):
    """An archive member would escape the destination; it was refused."""


class OutOfSpace(TransferError):
    """The file system DEST is on inside the sandbox ran out of space or inodes during an upload."""


# --------------------------------------------------------------------------- local paths


def shown(path: str | bytes | os.PathLike[str]) -> str:
    """``path`` for a message: whole up to :data:`SHOWN_PATH` characters, else its start and end around "…"."""
    text = os.fsdecode(path)
    if len(text) <= SHOWN_PATH:
        return text
    return f"{text[: SHOWN_PATH // 2]}…{text[-(SHOWN_PATH // 2 - 10) :]}"


def too_long_reason(path: str | bytes | os.PathLike[str]) -> str:
    """Why the kernel answered ``ENAMETOOLONG`` for ``path``: a name over :data:`NAME_MAX` bytes, or the path over :data:`PATH_MAX`."""
    raw = os.fsencode(path)
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"a name in it is {len(longest)} bytes long, and a file name may have at most {NAME_MAX}"
    if len(raw) >= PATH_MAX:
        return f"it is {len(raw)} bytes long, and a path may have at most {PATH_MAX - 1}"
    return "its file system takes shorter names"  # e.g. an encrypted home directory (ecryptfs: 143 bytes)


def local_path_problem(path: str | os.PathLike[str], *, must_exist: bool = True) -> Optional[str]:
    """What is wrong with a local path named on the command line, or None.

    :param must_exist: a missing ``path`` is a problem (an upload's LOCAL),
        or not (a download's DEST, which is created).
    :returns: ``"PATH is too long: …"`` when a name in it is over
        :data:`NAME_MAX` bytes or it is over :data:`PATH_MAX` (the kernel's
        ``ENAMETOOLONG``); ``"PATH does not exist"``; ``"PATH: REASON"`` when
        it cannot be looked at; the path is :func:`shown`.
    """
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return f"{shown(path)} is too long: {too_long_reason(path)}"
        if not must_exist:
            return None  # missing (created later) or not reachable (creating it says why)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"{shown(path)} does not exist"
        return f"{shown(path)}: {exc.strerror or exc}"
    return None


def check_upload_source(local: str | os.PathLike[str]) -> None:
    """Refuse an upload's LOCAL before anything is sent.

    LOCAL itself must not be a symlink: uploads send symlinks as links (never
    what they point to), and a link sent alone points outside what is
    uploaded, which the rule for links inside a directory refuses too.

    :raises TransferError: LOCAL does not exist or is too long (see :func:`local_path_problem`).
    :raises UnsafeMember: LOCAL is a symlink; the message names its target as the fix.
    """
    problem = local_path_problem(local, must_exist=False)  # too long
    if problem is None and not os.path.islink(Path(local)):  # Path: "link/" is the link too, as upload_members sees it
        problem = local_path_problem(local)  # missing
    if problem is not None:
        raise TransferError(f"{problem}; name a file or directory to upload")
    if os.path.islink(Path(local)):
        target = os.readlink(Path(local))
        real = os.path.realpath(local)
        fix = f"name what it points to instead ({shown(real)})" if os.path.exists(real) else "it points to nothing that exists"
        raise UnsafeMember(
            f"{shown(local)} is a symlink (-> {shown(target)}); uploads send symlinks as links, and this one alone would point outside what is uploaded: {fix}"
        )


def _local_os_error(exc: OSError, doing: str, fix: str, long_fix: str) -> TransferError:
    """A :class:`TransferError` for an ``OSError`` on a local path (``exc.filename``): one line naming the path, the cause and
    the fix (``long_fix`` when the path is too long)."""
    name = exc.filename if exc.filename is not None else "?"
    if exc.errno == errno.ENAMETOOLONG:
        return TransferError(f"{doing} {shown(name)} failed: the path is too long ({too_long_reason(name)}); {long_fix}")
    return TransferError(f"{doing} {shown(name)} failed: {exc.strerror or exc}; {fix}")


@dataclass
class Skipped:
    """A path tar inside the sandbox could not read (fully): it is missing or incomplete locally.

    ``path`` is the absolute path inside the sandbox as tar named it (GNU tar
    escapes unprintable characters); ``reason`` is tar's message for it,
    at most :data:`MAX_REASON` characters.
    """

    path: str
    reason: str


@dataclass
class Stats:
    """What a transfer moved: ``files`` (regular files), ``bytes`` (their sizes), ``links``, ``dirs``.

    Downloads only: ``skipped`` lists what tar in the sandbox could not read
    (empty for a complete download); ``skipped_cut`` is True when tar said more
    than :data:`MAX_STDERR` bytes, so the list may be incomplete.
    """

    files: int = 0
    bytes: int = 0
    links: int = 0
    dirs: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    skipped_cut: bool = False

    @property
    def complete(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped and not self.skipped_cut


# --------------------------------------------------------------------------- selecting files


MAX_NESTED_REPOS = 16  # repositories inside repositories an upload follows, in depth
GIT_TIMEOUT = 120.0  # seconds one git command may take
# What git says outside any repository; "not a git repository: PATH" is a broken .git pointer instead.
_NO_REPO_HERE = "not a git repository (or any"


def _git(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """``git -C root ARGS``. :raises OSError: no git here. :raises TransferError: it took too long."""
    # Untranslated messages: _NO_REPO_HERE is matched in them.
    env = {**os.environ, "LC_ALL": "C", "LANGUAGE": ""}
    try:
        return subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True, timeout=GIT_TIMEOUT, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise TransferError(f"'git {args[0]}' took more than {GIT_TIMEOUT:.0f} s in {shown(root)}; retry, or upload with --no-git-ignore") from None


def _git_refuses(root: Path, proc: subprocess.CompletedProcess) -> TransferError:
    said = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    why = next((ln for ln in said if ln.startswith("fatal:")), said[-1] if said else f"exit {proc.returncode}")
    return TransferError(
        f"git cannot read the repository at {shown(root)} ({why}), so its ignore rules cannot be applied; upload with"
        " --no-git-ignore to send everything, or make git accept it (another user's repository:"
        " 'git config --global --add safe.directory PATH'; a broken .git pointer: repair or remove it)"
    )


def _git_files(root: Path, depth: int = 0) -> Optional[list[str]]:
    """Paths under ``root`` (relative, '/'-separated) git would track, or None outside a work tree (or without git).

    A repository inside (untracked, or a submodule) is one directory to git; its
    files are listed from inside it, and sent when neither its own ignore rules
    nor the enclosing repository's exclude them (never its ``.git``). A submodule
    not checked out is its directory alone.

    :raises TransferError: git refuses a repository here (another user's: "dubious
        ownership") or fails; repositories nest deeper than :data:`MAX_NESTED_REPOS`.
    """
    try:
        inside = _git(root, "rev-parse", "--is-inside-work-tree")
    except OSError:  # no git on this machine
        return None
    if inside.returncode != 0:
        if _NO_REPO_HERE in inside.stderr.decode(errors="replace") and not os.path.lexists(root / ".git"):
            return None
        raise _git_refuses(root, inside)  # walking instead would send its .git and what it ignores
    if inside.stdout.strip() != b"true":
        return None
    out = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if out.returncode != 0:
        raise TransferError(f"git ls-files failed in {root}: {out.stderr.decode(errors='replace').strip()}; retry with --no-git-ignore")
    names: list[str] = []
    nested: list[str] = []
    for p in out.stdout.decode("utf-8", "surrogateescape").split("\0"):
        full = root / p
        if p.endswith("/") or (p and full.is_dir() and not full.is_symlink()):
            sub = p.rstrip("/")
            if sub in ("", "."):
                continue
            names.append(sub)  # the directory itself, also when nothing in it is sent
            if not os.path.lexists(full / ".git"):
                continue  # a submodule not checked out (git would answer for the enclosing repository)
            if depth >= MAX_NESTED_REPOS:
                raise TransferError(f"repositories nest more than {MAX_NESTED_REPOS} deep at {shown(full)}; upload with --no-git-ignore")
            inner = _git_files(full, depth + 1)
            if inner is None:
                raise TransferError(
                    f"{shown(full)} has a .git that git does not take for a repository, so its ignore rules cannot be"
                    " applied; upload with --no-git-ignore to send everything, or repair or remove that .git"
                )
            nested.extend(f"{sub}/{q}" for q in inner)
        elif p:
            names.append(p)
    if nested:
        # The enclosing repository's rules too: a *.pem or secret.env it ignores stays here.
        # "./" first: a name starting with ":" would be read as pathspec magic.
        asked = b"".join(b"./" + n.encode("utf-8", "surrogateescape") + b"\0" for n in nested)
        check = _git(root, "check-ignore", "--no-index", "--stdin", "-z", stdin=asked)
        if check.returncode not in (0, 1):  # 1: none ignored
            raise _git_refuses(root, check)
        ignored = {p.removeprefix("./") for p in check.stdout.decode("utf-8", "surrogateescape").split("\0")}
        names.extend(n for n in nested if n not in ignored)
    return names


def _walk(root: Path) -> list[str]:
    paths: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            paths.append(name if rel == "." else f"{rel}/{name}")
        dirnames.sort()
    return paths


def _check_link_inside(rel: str, target: str) -> None:
    """Refuse a symlink at ``rel`` whose target leaves the tree."""
    if target.startswith("/"):
        raise UnsafeMember(f"symlink {rel} -> {target} points outside (absolute); it would escape the destination")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if joined == ".." or joined.startswith("../"):
        raise UnsafeMember(f"symlink {rel} -> {target} points outside the uploaded tree")


def upload_members(local: Path, git_ignore: bool = True) -> tuple[Path, list[str]]:
    """Return ``(base, names)``: the directory the tar is built from and the member names in it.

    :raises TransferError: LOCAL does not exist or is too long.
    :raises UnsafeMember: LOCAL is a symlink (:func:`check_upload_source`), or a symlink in LOCAL points outside it.
    :raises OSError: a path in LOCAL cannot be looked at (too long, unreadable); ``filename`` names it.
    """
    check_upload_source(local)
    local = Path(local)
    if not local.is_dir():
        return local.parent, [local.name]
    names = _git_files(local) if git_ignore else None
    if names is None:
        names = _walk(local)
    else:
        # git lists files; their directories (and tracked symlinks) must come along
        dirs: set[str] = set()
        for n in names:
            parts = n.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        names = sorted(dirs) + [n for n in names if n not in dirs and ((local / n).exists() or (local / n).is_symlink())]
    for n in names:
        full = local / n
        if full.is_symlink():
            _check_link_inside(n, os.readlink(full))
    return local, names


# --------------------------------------------------------------------------- streaming


class _StderrKeeper:
    """Reads an SSH channel's stderr as it arrives: ``stderr`` keeps the first :data:`MAX_STDERR` bytes, ``stderr_cut`` says more came.

    Stdout and stderr share one SSH window: stderr nobody reads (tar's message
    about each of thousands of files it cannot read or write) would stall tar.
    """

    def __init__(self, chan) -> None:
        self.chan = chan
        self.stderr = bytearray()
        self.stderr_cut = False

    def drain_stderr(self) -> None:
        while self.chan.recv_stderr_ready():
            data = self.chan.recv_stderr(CHUNK)
            if not data:
                return
            room = MAX_STDERR - len(self.stderr)
            if len(data) > room:
                self.stderr_cut = True
            self.stderr += data[: max(room, 0)]


class _ChannelWriter(_StderrKeeper):
    """File-like sink for ``tarfile`` that sends to an SSH channel in :data:`CHUNK` pieces and counts bytes.

    ``tarfile`` streams with its default 10 KiB record buffer (a bigger one makes
    its bytes concatenation quadratic); batching happens here, in a bytearray.
    The remote tar's stderr is read between chunks (tar inside a full
    sandbox says "No space left on device" once per file it cannot write).
    """

    def __init__(self, chan) -> None:
        super().__init__(chan)
        self.sent = 0
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        self.drain_stderr()
        if self.buf:
            self.chan.sendall(bytes(self.buf))
            self.sent += len(self.buf)
            self.buf.clear()


class _ChannelReader(_StderrKeeper):
    """File-like source for ``tarfile`` reading an SSH channel's stdout, keeping its stderr aside.

    ``read(n)`` returns at most ``n`` bytes as they arrive (b"" at EOF);
    ``tarfile``'s stream reader loops until it has what it needs. Stderr is
    read while we wait (:class:`_StderrKeeper`).
    """

    def __init__(self, chan) -> None:
        super().__init__(chan)
        self.eof = False
        self.buf = b""
        self.pos = 0
        chan.settimeout(0.5)  # wake up now and then to read stderr

    def read(self, n: int = -1) -> bytes:
        # tarfile asks for 512 B .. 10 KiB at a time; each channel recv takes
        # paramiko's buffer lock and may wait for its thread, so take what is
        # there (up to CHUNK) at once and serve the small reads from it.
        if self.pos >= len(self.buf):
            self.buf, self.pos = self._fill(), 0
        if n is None or n < 0:
            n = CHUNK
        data = self.buf[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def _fill(self) -> bytes:
        while True:
            self.drain_stderr()
            try:
                data = self.chan.recv(CHUNK)
            except socket.timeout:
                continue
            self.eof = self.eof or not data
            return data


def remote_extract_command(dest: str) -> str:
    """The shell command that unpacks an upload inside the sandbox (GNU tar, as the sandbox user).

    GNU tar refuses ``..`` members and strips a leading ``/`` by default;
    ``--no-same-owner`` keeps files owned by the sandbox user,
    ``--no-overwrite-dir`` keeps DEST's own mode.
    """
    q = shlex.quote(dest)
    return f"PATH=/usr/bin:/bin; export PATH; mkdir -p {q} && exec tar -x -f - --no-same-owner --no-overwrite-dir -C {q}"


def remote_is_dir(transport, path: str) -> bool:
    """True when ``path`` is a directory (or a link to one) inside the sandbox, as the sandbox user sees it."""
    chan = transport.open_session()
    try:
        chan.exec_command(f"test -d {shlex.quote(path)}")
        return chan.recv_exit_status() == 0
    finally:
        chan.close()


def upload(transport, local: Path, dest: str, *, git_ignore: bool = True, progress: Optional[Callable[[int], None]] = None) -> Stats:
    """Upload ``local`` to ``dest`` inside the sandbox.

    A directory's contents land in ``dest``; a single file lands in ``dest``
    when that is a directory (or ends with ``/``), else it is written as ``dest``.

    :param transport: authenticated ``paramiko.Transport`` to the sandbox.
    :param dest: absolute path inside the sandbox (missing directories are created).
    :param progress: called with the bytes sent so far.
    :raises OutOfSpace: the file system ``dest`` is on in the sandbox is full
        (``No space left on device``, ``Disk quota exceeded``); the message
        names it, its size and the fix.
    :raises TransferError: LOCAL (or a path in it) is missing, too long or
        unreadable, or tar inside the sandbox failed (its message is included).
    :raises UnsafeMember: LOCAL is a symlink, or holds a link pointing outside it.
    """
    if not dest.startswith("/"):
        dest = "/sandbox/" + dest
    progress = _throttled(progress)
    try:
        base, names = upload_members(Path(local), git_ignore)
    except OSError as exc:
        raise _local_os_error(exc, "reading", "check that the files to upload are readable", _UPLOAD_LONG_FIX) from exc
    arcnames = list(names)
    into = dest
    single = not Path(local).is_dir() or Path(local).is_symlink()
    if single and not dest.endswith("/") and not remote_is_dir(transport, dest):
        into, arcname = posixpath.split(dest)  # one file, named by DEST
        arcnames = [arcname]
    chan = transport.open_session()
    chan.exec_command(remote_extract_command(into))
    writer = _ChannelWriter(chan)
    gnu_tar = None if single else _gnu_tar()
    try:
        if gnu_tar:
            stats = _pack_with_tar(gnu_tar, base, names, writer, progress)
        else:
            stats = _pack_with_tarfile(base, names, arcnames, writer, progress)
        writer.flush()  # after close(): the end-of-archive blocks are in the buffer too
    except (OSError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:  # a local file, not the channel
            chan.close()
            raise _local_os_error(exc, "reading", "check that the files to upload are readable", _UPLOAD_LONG_FIX) from exc
        # The channel closed under us: when tar (or the mkdir before it) exited
        # with an error first, its message says why.
        if chan.status_event.wait(5) and chan.exit_status not in (0, -1):
            writer.drain_stderr()
            chan.close()
            raise _remote_failure(transport, dest, chan.exit_status, bytes(writer.stderr)) from exc
        chan.close()
        raise TransferError(f"upload to {dest} broke off ({exc}); see the sandbox's free space and permissions") from exc
    chan.shutdown_write()
    # Drain stdout until the remote tar exits (it prints nothing on success).
    while not chan.exit_status_ready() or chan.recv_ready():
        writer.drain_stderr()
        if chan.recv_ready():
            chan.recv(CHUNK)
        elif chan.closed:
            break
        else:
            chan.status_event.wait(0.1)
    code = chan.recv_exit_status()
    writer.drain_stderr()
    chan.close()
    if code != 0:
        raise _remote_failure(transport, dest, code, bytes(writer.stderr))
    return stats


_UPLOAD_LONG_FIX = "upload a directory further down, or move what is too long to a shorter path"
# "Wrote only N of M bytes": GNU tar's word for a short write(2), which on a file means the space ran out mid-write
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded|: Wrote only [0-9]+ of [0-9]+ bytes")
_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")  # each a tmpfs of limits.tmp (docs/resources.md)


def _remote_failure(transport, dest: str, code: int, err: bytes) -> TransferError:
    """The error for an upload whose extract command exited ``code`` with stderr ``err``."""
    text = err.decode(errors="replace")
    if _NO_SPACE.search(text):
        return OutOfSpace(_no_space_message(transport, dest, text))
    line = _last_message(text)
    if line.startswith("mkdir: "):  # tar never ran: DEST's directory could not be made
        return TransferError(
            f"cannot create {dest} in the sandbox ({line.removeprefix('mkdir: ')}); name a DEST the policy lets the sandbox write (such as /sandbox or /tmp)"
        )
    return TransferError(f"tar in the sandbox failed ({code}): {line or 'no message'}; check that {dest} is writable by the policy")


def _last_message(text: str) -> str:
    """The last line of tar's stderr that says something (not its closing "Exiting with failure status")."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.removeprefix("tar: ") not in _TAR_NOISE]
    return (said or lines or [""])[-1]


@dataclass
class FsUsage:
    """``df -P`` of one file system inside the sandbox: where it is mounted, KiB and inodes (total, free)."""

    mount: str
    kib: int
    kib_free: int
    inodes: int
    inodes_free: int


def remote_fs_usage(transport, path: str) -> Optional[FsUsage]:
    """The file system holding ``path`` (or its nearest existing parent) inside the sandbox, or None when ``df`` did not say."""
    q = shlex.quote(path)
    cmd = (
        f'PATH=/usr/bin:/bin; export PATH; p={q}; while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname -- "$p"); done; '
        'df -P -k -- "$p" | tail -n 1 && df -P -i -- "$p" | tail -n 1'
    )
    try:
        chan = transport.open_session()
        try:
            chan.settimeout(10)
            chan.exec_command(cmd)
            out = b""
            while data := chan.recv(CHUNK):
                out += data
            if chan.recv_exit_status() != 0:
                return None
        finally:
            chan.close()
        blocks, inodes = out.decode(errors="replace").splitlines()[-2:]
        # Filesystem 1024-blocks Used Available Capacity Mounted-on / Filesystem Inodes IUsed IFree IUse% Mounted-on
        b, i = blocks.split(None, 5), inodes.split(None, 5)
        return FsUsage(mount=b[5], kib=int(b[1]), kib_free=int(b[3]), inodes=int(i[1]), inodes_free=int(i[3]))
    except Exception:  # noqa: BLE001 - only a detail of an error message; the error itself stands
        return None


def _no_space_message(transport, dest: str, text: str) -> str:
    """The one-line message for an upload the sandbox had no room for: what is full, how big it is, the fix."""
    cause = next(ln.strip() for ln in text.splitlines() if _NO_SPACE.search(ln))
    usage = remote_fs_usage(transport, dest)
    mount = usage.mount if usage else next((m for m in ("/sandbox", *_TMPFS) if dest == m or dest.startswith(m + "/")), "")
    if mount == "/sandbox":
        where = "the sandbox's workdir /sandbox"
        fix = f"Remove files from it, or create the sandbox with a larger --disk (the default is {DEFAULTS['disk']})"
    elif mount in _TMPFS:
        where = f"the sandbox's {mount}"
        fix = "Remove files from it, upload into /sandbox instead, or give the sandbox a larger limits.tmp (docs/resources.md)"
    else:
        where = f"the file system at {mount} in the sandbox" if mount else f"the file system holding {dest} in the sandbox"
        fix = "Remove files from it, or upload somewhere else"
    if usage and usage.inodes and usage.inodes_free == 0:
        what = f"ran out of inodes (all {usage.inodes} in use, one per file or directory; {cause})"
    elif usage:
        what = f"ran out of space ({_kib(usage.kib)} file system, {_kib(usage.kib_free)} free; {cause})"
    else:
        what = f"ran out of space ({cause})"
    kept = "" if cause.startswith("mkdir:") else " What fit was written (the last file may be cut): upload again when there is room."
    return f"upload to {dest} failed: {where} {what}. {fix}.{kept}"


def _kib(n: int) -> str:
    return f"{n} KiB" if n < 1024 else f"{n / 1024:.1f} MiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} GiB"


def _throttled(progress: Optional[Callable[[int], None]]) -> Optional[Callable[[int], None]]:
    """``progress``, called at most every :data:`PROGRESS_EVERY` seconds (a status line redraw costs ~0.1 ms; files take less)."""
    if progress is None:
        return None
    last = [0.0]

    def call(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            progress(n)

    return call


def _gnu_tar() -> Optional[str]:
    """Path of a GNU ``tar`` on this machine, or None (then ``tarfile`` packs; bsdtar lacks the options used)."""
    exe = shutil.which("tar")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if out.startswith(b"tar (GNU tar)") else None


def _member_stats(base: Path, names: list[str]) -> tuple[list[str], Stats]:
    """Keep the names ``tarfile`` would send (regular files, directories, symlinks) and count them."""
    kept: list[str] = []
    stats = Stats()
    seen: set[tuple[int, int]] = set()  # (device, inode) of files with more than one name: their bytes count once
    for name in names:
        st = os.lstat(base / name)
        if stat.S_ISREG(st.st_mode):
            stats.files += 1
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    kept.append(name)
                    continue
                seen.add((st.st_dev, st.st_ino))
            stats.bytes += st.st_size
        elif stat.S_ISDIR(st.st_mode):
            stats.dirs += 1
        elif stat.S_ISLNK(st.st_mode):
            stats.links += 1
        else:
            continue  # devices, FIFOs, sockets: skipped, as by the tarfile packer
        kept.append(name)
    return kept, stats


def _pack_with_tar(exe: str, base: Path, names: list[str], writer: _ChannelWriter, progress: Optional[Callable[[int], None]]) -> Stats:
    """Stream ``names`` (relative to ``base``) through GNU ``tar -c`` into ``writer``.

    GNU tar does the per-file work (headers, reads) in its own process, ~10x
    faster than ``tarfile`` for trees of small files; the members, owners
    (0, no names) and modes are those the ``tarfile`` packer would send.

    :raises TransferError: tar failed (its last message is included).
    """
    kept, stats = _member_stats(base, names)
    # --verbatim-files-from: a listed name starting with "-" is a name, not an option
    argv = [exe, "-c", "-f", "-", "--format=gnu", "--owner=0", "--group=0", "--numeric-owner"]
    argv += ["-C", str(base), "--no-recursion", "--null", "--verbatim-files-from", "-T", "-"]
    listing = b"".join(os.fsencode(n) + b"\0" for n in kept)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        err = bytearray()
        feeder = threading.Thread(target=_feed, args=(proc.stdin, listing, proc.stderr, err), daemon=True)
        feeder.start()
        try:
            while chunk := os.read(proc.stdout.fileno(), CHUNK):
                writer.write(chunk)
                if progress:
                    progress(writer.sent)
        except BaseException:
            proc.kill()
            raise
        code = proc.wait()
        feeder.join()
    lines = err.decode(errors="replace").strip().splitlines()
    if code == 1:  # a file changed while tar read it: what arrived may be padded or cut
        raise TransferError(
            f"a file changed while it was uploaded ({lines[-1] if lines else 'tar exited 1'}); its copy in the sandbox may be incomplete: upload again"
        )
    if code != 0:
        raise TransferError(f"reading the files to upload failed: {lines[-1] if lines else f'tar exited {code}'}; check that they are readable")
    return stats


def _feed(stdin: IO[bytes], data: bytes, stderr: IO[bytes], err: bytearray) -> None:
    """Write the name list to tar, then read its stderr to the end (keeping :data:`MAX_STDERR` bytes), so neither pipe stalls it."""
    try:
        stdin.write(data)
        stdin.close()
    except OSError:
        pass  # tar died; its exit status says why
    while chunk := stderr.read(CHUNK):
        err += chunk[: max(MAX_STDERR - len(err), 0)]


def _pack_with_tarfile(base: Path, names: list[str], arcnames: list[str], writer: _ChannelWriter, progress: Optional[Callable[[int], None]]) -> Stats:
    """Stream ``names`` as ``arcnames`` with Python's ``tarfile`` (single files, and machines without GNU tar)."""
    stats = Stats()
    # cast: stream modes ("w|", "r|") only write/read, typeshed asks every mode for a seekable file
    with tarfile.open(fileobj=cast(IO[bytes], writer), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, arcname in zip(names, arcnames, strict=True):
            info = tar.gettarinfo(str(base / name), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(base / name, "rb") as fh:
                    tar.addfile(info, fh)
                stats.files += 1
                stats.bytes += info.size
            elif info.isdir() or info.issym() or info.islnk():  # islnk: a second name of a file already sent
                tar.addfile(info)
                stats.dirs += info.isdir()
                stats.links += info.issym()
                stats.files += info.islnk()
            if progress:
                progress(writer.sent)
    return stats


def download_command(path: str) -> str:
    """The shell command that streams ``path`` out of the sandbox as a tar archive on stdout.

    A directory is archived as ``.`` from inside it, anything else by its
    base name from its parent. Exits :data:`MISSING_EXIT` when ``path`` does not exist.
    """
    q = shlex.quote(path)
    return (
        "PATH=/usr/bin:/bin; export PATH; "
        f"if [ -d {q} ]; then cd {q} && exec tar -c -f - .; "
        f'elif [ -e {q} ] || [ -L {q} ]; then cd "$(dirname {q})" && exec tar -c -f - -- "$(basename {q})"; '
        f"else echo 'no such file or directory' >&2; exit {MISSING_EXIT}; fi"
    )


def _make_dest(dest: Path) -> list[Path]:
    """Create ``dest`` and its missing parents; return the directories created, deepest first.

    :raises TransferError: ``dest`` exists and is not a directory, or cannot be created.
    """
    created: list[Path] = []
    p = Path(os.path.abspath(dest))
    while not p.exists() and not p.is_symlink() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise TransferError(f"cannot create {dest} ({exc.strerror or exc}); name a writable directory as DEST") from exc
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories in ``created`` (deepest first) while they are empty; never anything else."""
    for d in created:
        try:
            d.rmdir()  # fails on a non-empty directory, which is what we want
        except OSError:
            return


_TAR_NOISE = ("Exiting with failure status due to previous errors",)
_TAR_REASON = re.compile(
    r": (Cannot [A-Za-z]+: .*|Read error at byte .*|File shrank by .*|file changed as we read it"
    r"|file removed before we read it|Directory renamed before its status could be extracted)$"
)


def parse_tar_stderr(text: str, path: str) -> list[Skipped]:
    """Turn GNU tar's stderr from :func:`download_command` into :class:`Skipped` entries.

    :param text: tar's stderr (``tar: NAME: REASON`` lines).
    :param path: the absolute sandbox path that was downloaded. A directory is
        archived from inside (names ``.`` and ``./...``), anything else by its
        base name, which never starts with ``./``; that tells the two apart.
    :returns: one entry per message naming a path; a message without a path is
        reported against ``path``; tar's closing summary line is dropped.
    """
    out: list[Skipped] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        body = line[5:] if line.startswith("tar: ") else line
        if body in _TAR_NOISE:
            continue
        m = _TAR_REASON.search(body)
        name, reason = (body[: m.start()], m.group(1)) if m and m.start() > 0 else ("", body)
        if not name:
            where = path
        elif name == "." or name.startswith("./"):
            where = posixpath.normpath(posixpath.join(path, name))
        else:
            where = posixpath.join(posixpath.dirname(path), name)
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        out.append(Skipped(where, reason))
    return out


def download(transport, path: str, dest: Path | str, *, progress: Optional[Callable[[int], None]] = None) -> Stats:
    """Download ``path`` (file or directory inside the sandbox) to ``dest`` here.

    A directory's contents land in directory ``dest``. A file lands in ``dest``
    when that is a directory (or a string ending with ``/``), else it is
    written as ``dest`` (an existing file is replaced).
    The directory written into and its missing parents are created; when the
    download fails they are removed again if still empty (nothing that existed
    before is touched).
    Paths tar inside the sandbox cannot read do not fail the download: the
    rest is written and they are listed in the returned ``Stats.skipped``.

    :param transport: authenticated ``paramiko.Transport`` to the sandbox.
    :param path: absolute path inside the sandbox (relative: below ``/sandbox``).
    :param progress: called with the bytes written so far.
    :returns: what was written, and what was skipped.
    :raises UnsafeMember: the sandbox sent a member that would escape ``dest`` (nothing of it is written).
    :raises TransferError: the path does not exist, tar failed inside the sandbox,
        the connection was lost before the archive was complete, or ``dest``
        (or a path below it) is too long for this machine's file system.
    """
    if not path.startswith("/"):
        path = "/sandbox/" + path
    # Absolute too: a short relative DEST in a deep directory may be past PATH_MAX.
    problem = local_path_problem(dest, must_exist=False) or local_path_problem(os.path.abspath(dest), must_exist=False)
    if problem is not None:
        fix = "name a shorter DEST" if " is too long: " in problem else "name a writable directory as DEST"
        raise TransferError(f"cannot download: DEST {problem}; {fix}")
    progress = _throttled(progress)
    into_dir = str(dest).endswith(os.sep)
    dest = Path(dest)
    rename: Optional[tuple[str, str]] = None
    root = dest
    if not into_dir and not dest.is_dir() and not remote_is_dir(transport, path):
        # one file, named by DEST: the archive must hold exactly that file
        root, rename = Path(os.path.abspath(dest)).parent, (posixpath.basename(path.rstrip("/")), dest.name)
    created = _make_dest(root)
    stats = Stats()
    ok = False
    try:
        stats = _download_into(transport, path, root, progress, rename)
        ok = True
        return stats
    except OSError as exc:  # writing here: disk full, permissions, a path too long
        if exc.errno == errno.ENAMETOOLONG and exc.filename is not None:
            raise _local_os_error(exc, f"writing the download of {path} as", "", "download into a shorter DEST, or a directory further down") from exc
        raise TransferError(f"writing the download of {path} into {dest} failed: {exc}; check free space and permissions") from exc
    finally:
        if not ok or (not stats.complete and stats.files + stats.links + stats.dirs == 0):
            # A failed download leaves no empty DEST behind; so does one where
            # tar could read nothing (the skipped list says why).
            _remove_empty(created)


def _download_into(transport, path: str, dest: Path, progress: Optional[Callable[[int], None]], rename: Optional[tuple[str, str]]) -> Stats:
    try:
        chan = transport.open_session()
    except Exception as exc:  # paramiko.SSHException: the session is gone
        raise TransferError(f"the connection to the sandbox was lost before {path} was downloaded: {exc}") from exc
    stats = Stats()
    try:
        chan.exec_command(download_command(path))
        reader = _ChannelReader(chan)
        try:
            with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:  # cast: see upload()
                extract_stream(tar, dest, stats, progress, rename=rename)
            while reader.read(CHUNK):  # tar's record padding, then EOF
                pass
            broken: Optional[Exception] = None
        except (tarfile.ReadError, EOFError) as exc:
            if not reader.eof:
                # Bytes that are no tar archive while tar still runs: stop reading (closing kills it).
                raise TransferError(f"download of {path} failed: the sandbox sent a malformed archive ({exc})") from exc
            broken = exc
        code = chan.recv_exit_status()  # -1 when the channel closed without one (connection lost)
        reader.drain_stderr()
        err = reader.stderr.decode(errors="replace")
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if code == MISSING_EXIT:
            raise TransferError(f"{path} does not exist in the sandbox; check the path with 'openshell sandbox exec NAME -- ls'")
        if code == -1:
            raise TransferError(
                f"connection to the sandbox was lost while downloading {path} ({plural(stats.files, 'file')} written to {dest}); run the download again"
            ) from broken
        if broken is not None or code not in (0, 1, 2) or "Error is not recoverable" in err:
            raise TransferError(f"download of {path} failed: {last or broken or f'tar exited {code}'}") from broken
        if code != 0:
            # Complete archive, but tar skipped (or half-read) what it could not read.
            stats.skipped = parse_tar_stderr(err, path)
            stats.skipped_cut = reader.stderr_cut
            if not stats.skipped:
                stats.skipped = [Skipped(path, f"tar exited {code} without a message")]
        return stats
    finally:
        chan.close()


# --------------------------------------------------------------------------- safe extraction


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def safe_target(root: Path, member: tarfile.TarInfo) -> Path:
    """Return where ``member`` may be written below ``root``.

    :raises UnsafeMember: absolute name, ``..`` component, a parent that
        resolves outside ``root`` (through a symlink), or a link target outside.
    """
    return _Targets(root).check(member)


class _Targets:
    """:func:`safe_target` for one extraction, remembering what it resolved.

    ``real_dirs`` holds parents already resolved to themselves (no link on the
    way) inside the real root: a path there stays a real directory for the
    rest of the extraction, because no member may replace a directory (a file
    or link member over one is refused or fails), so its parent check need
    not walk the path again (``realpath`` is one ``lstat`` per component).
    """

    def __init__(self, root: Path) -> None:
        self.real_root = os.path.realpath(root)
        self.real_dirs: set[str] = {self.real_root}

    def _parent_inside(self, parent: str) -> bool:
        if parent in self.real_dirs:
            return True
        real = os.path.realpath(parent)
        if real == parent and os.path.isdir(parent) and _inside(self.real_root, parent):
            self.real_dirs.add(parent)
        return _inside(self.real_root, real)

    def check(self, member: tarfile.TarInfo) -> Path:
        """See :func:`safe_target`."""
        return Path(self.target(member)[0])

    def target(self, member: tarfile.TarInfo) -> tuple[str, Optional[os.stat_result]]:
        """``(path, lstat of it or None)`` where ``member`` may be written; see :func:`safe_target`."""
        name = member.name
        if len(name) > MAX_MEMBER_NAME or "\0" in name:
            raise UnsafeMember(f"member name too long or malformed: {name[:80]!r}")
        if name.startswith("/"):
            raise UnsafeMember(f"member {name!r} has an absolute path; refused")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UnsafeMember(f"member {name!r} contains '..'; refused")
        real_root = self.real_root
        if not parts:
            if not member.isdir():
                raise UnsafeMember(f"member {name!r} would replace the destination itself; refused")
            return real_root, os.lstat(real_root)
        parent = real_root if len(parts) == 1 else real_root + "/" + "/".join(parts[:-1])
        target = parent + "/" + parts[-1]
        if not self._parent_inside(parent):
            raise UnsafeMember(f"member {name!r} would be written through a link outside the destination; refused")
        try:
            st: Optional[os.stat_result] = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode) and not member.issym():
            raise UnsafeMember(f"member {name!r} would replace or write through an existing symlink; refused")
        if member.issym():
            link = member.linkname
            # realpath of the joined path, not of its normpath: "c/.." must follow c when c is a link
            if link.startswith("/") or not _inside(real_root, os.path.realpath(os.path.join(parent, link))):
                raise UnsafeMember(f"symlink {name!r} -> {link!r} points outside the destination; refused")
        if member.islnk():
            link = member.linkname
            lparts = [p for p in link.split("/") if p not in ("", ".")]
            if link.startswith("/") or ".." in lparts or not _inside(real_root, os.path.realpath(os.path.join(real_root, *lparts))):
                raise UnsafeMember(f"hard link {name!r} -> {link!r} points outside the destination; refused")
            if os.path.join(real_root, *lparts) == target:
                raise UnsafeMember(f"hard link {name!r} points to itself; refused")
        if st is not None and stat.S_ISDIR(st.st_mode) and not member.isdir():
            raise UnsafeMember(f"member {name!r} would replace a directory; refused")
        return target, st


def extract_stream(
    tar: tarfile.TarFile, root: Path, stats: Stats, progress: Optional[Callable[[int], None]] = None, *, rename: Optional[tuple[str, str]] = None
) -> None:
    """Extract a streamed archive member by member under ``root`` with :func:`safe_target` checks.

    Directory modes are applied at the end (a read-only directory must not
    block its own contents).

    :param rename: ``(name, new_name)``: the archive must hold only member
        ``name`` (a single-file download), written as ``root/new_name``; any
        other member is refused.
    """
    dir_modes: list[tuple[str, int]] = []
    targets = _Targets(root)
    umask = os.umask(0o022)
    os.umask(umask)  # (read it back: no other way to read the umask)
    finished = False
    try:
        for member in _members(tar):
            if rename is not None:
                if member.name != rename[0] or member.isdir():
                    raise UnsafeMember(f"member {member.name!r} is not the requested file {rename[0]!r}; refused")
                member.name = rename[1]
            target, st = targets.target(member)
            parent = os.path.dirname(target)
            mode = member.mode & 0o777 & ~umask  # a sandbox asks for 0777: the user's umask still applies
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                os.chmod(target, 0o700)
                dir_modes.append((target, mode))
                stats.dirs += 1
            elif member.isreg():
                if parent not in targets.real_dirs:
                    os.makedirs(parent, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a regular member always has a file
                if st is not None and not stat.S_ISREG(st.st_mode):
                    raise UnsafeMember(f"member {member.name!r} would replace a non-file; refused")
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    while chunk := src.read(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                        stats.bytes += len(chunk)
                        if progress:
                            progress(stats.bytes)
                    os.fchmod(fd, mode)
                    os.utime(fd, (member.mtime, member.mtime))
                finally:
                    os.close(fd)
                stats.files += 1
            elif member.issym():
                os.makedirs(parent, exist_ok=True)
                if st is not None:
                    os.unlink(target)  # a directory there: IsADirectoryError ends the download
                os.symlink(member.linkname, target)
                stats.links += 1
            elif member.islnk():
                src_path = os.path.join(targets.real_root, *[p for p in member.linkname.split("/") if p not in ("", ".")])
                os.makedirs(parent, exist_ok=True)
                if st is not None:
                    os.unlink(target)
                os.link(src_path, target, follow_symlinks=False)
                stats.files += 1
            # devices, FIFOs and anything else: skipped
        finished = True
    finally:
        # Also after a refused or failed member: what was written keeps the
        # sandbox's directory modes instead of the 0700 used while writing.
        for path, mode in reversed(dir_modes):
            if finished:
                os.chmod(path, mode)
            else:
                with contextlib.suppress(OSError):
                    os.chmod(path, mode)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def regular_mode(path: Path) -> int:
    """Permission bits of ``path`` (for tests and reports)."""
    return stat.S_IMODE(os.lstat(path).st_mode)
