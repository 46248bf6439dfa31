"""The sandbox's init as a small compiled program, when this machine can build it.

Every sandbox has an init (pid 1 of its PID namespace, ``sandbox_ns``). As a
Python interpreter it costs ~4 MiB of proportional memory per sandbox, a fifth
of a sandbox's whole footprint; ``native/openshell-init.c`` does the same steps
in ~0.1 MiB. It is built with the machine's C compiler (``cc``) once per source
version, into a root-only cache, by the ``local`` driver's fork server while it
warms up (``build``). Where there is no compiler, or the cache cannot be
trusted, sandboxes keep the Python init (``sandbox_ns.INIT_CODE``): both do the
same, so nothing depends on which one runs.

The cache is ``/var/cache/openshell/`` and each build is named by a hash of the
source and the machine type, so a changed source is never served by an old
binary. Since root executes what is there, ``binary`` uses a file only when it
and every directory above it belong to root and no one else can write them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import time
from pathlib import Path

log = logging.getLogger("openshell.supervisor")

SOURCE = Path(__file__).with_name("native") / "openshell-init.c"
CACHE_DIR = Path("/var/cache/openshell")
BUILD_TIMEOUT = 60.0  # seconds for one compiler run
PARTIAL_PREFIX = "."  # a build in progress: .openshell-init-<hash>.<pid>
STALE_PARTIAL = 3600.0  # seconds after which such a file is a crashed build's
_CFLAGS = ("-O2", "-s")


@functools.cache
def _source() -> tuple[str, bytes] | None:
    """``(openshell-init-<hash>, source bytes)`` for this source and machine; None
    without the source. Read once: what is compiled is what was hashed."""
    try:
        data = SOURCE.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256(data + b"\0" + platform.machine().encode() + b"\0" + " ".join(_CFLAGS).encode())
    return f"openshell-init-{digest.hexdigest()[:16]}", data


def _name() -> str | None:
    found = _source()
    return found[0] if found else None


def _root_only(path: Path, *, regular: bool, sticky_ok: bool = False) -> bool:
    """True when ``path`` (not a symlink) belongs to root and only root may write it;
    with ``sticky_ok`` a directory like ``/tmp`` passes too (others may add entries
    there but not rename or remove root's)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISREG(st.st_mode) if regular else stat.S_ISDIR(st.st_mode)
    writable = st.st_mode & 0o022 and not (sticky_ok and st.st_mode & stat.S_ISVTX)
    return kind and st.st_uid == 0 and not writable


def _trusted_dir(directory: Path) -> bool:
    directory = Path(os.path.abspath(directory))  # every component checked, none resolved
    return _root_only(directory, regular=False) and all(_root_only(d, regular=False, sticky_ok=True) for d in directory.parents)


def binary(cache_dir: Path | None = None) -> str | None:
    """Path of the built init for this source in ``cache_dir`` (default
    :data:`CACHE_DIR`), or None: not built (yet), or the file or a directory above
    it could be changed by someone other than root."""
    name = _name()
    if name is None:
        return None
    cache_dir = CACHE_DIR if cache_dir is None else cache_dir
    path = cache_dir / name
    if not (_root_only(path, regular=True) and _trusted_dir(cache_dir)):
        return None
    return str(path)


def _remove_stale_partials(cache_dir: Path) -> None:
    """Remove what a build killed half-way left (older than ``STALE_PARTIAL`` seconds)."""
    now = time.time()
    for leftover in cache_dir.glob(f"{PARTIAL_PREFIX}openshell-init-*"):
        with contextlib.suppress(OSError):
            if now - leftover.lstat().st_mtime > STALE_PARTIAL:
                leftover.unlink()


def build(cache_dir: Path | None = None) -> str | None:
    """Build the init into ``cache_dir`` (default :data:`CACHE_DIR`) unless it is
    there; its path, or None when it
    cannot be built here (not root, no compiler, a compiler error, an untrusted
    cache). Never raises: the caller keeps the Python init. Safe to run in several
    processes at once (each compiles to a file of its own and renames it).
    """
    found = _source()
    if found is None or os.geteuid() != 0:
        return None
    name, source = found
    cache_dir = CACHE_DIR if cache_dir is None else cache_dir
    if (built := binary(cache_dir)) is not None:
        return built
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    try:
        cache_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("event=native_init_unavailable reason=cannot make %s: %s", cache_dir, exc)
        return None
    if not _trusted_dir(cache_dir):
        log.warning("event=native_init_unavailable reason=%s or a directory above it is not root's alone", cache_dir)
        return None
    _remove_stale_partials(cache_dir)
    tmp = cache_dir / f"{PARTIAL_PREFIX}{name}.{os.getpid()}"
    try:
        done = subprocess.run(
            [cc, *_CFLAGS, "-x", "c", "-o", str(tmp), "-"],
            input=source,
            capture_output=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            # only what finds the compiler's parts: no CPATH, COMPILER_PATH, GCC_EXEC_PREFIX...
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
        if done.returncode != 0:
            log.warning("event=native_init_unavailable reason=%s failed: %s", cc, done.stderr.decode(errors="replace")[-500:])
            return None
        os.chmod(tmp, 0o755)
        os.rename(tmp, cache_dir / name)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("event=native_init_unavailable reason=build: %s", exc)
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return binary(cache_dir)


if __name__ == "__main__":  # python -m openshell.supervisor.native_init: build it now
    import sys

    built = build()
    print(built or "not built: no C compiler, not root, or an untrusted cache (the Python init is used)")
    sys.exit(0 if built else 1)
