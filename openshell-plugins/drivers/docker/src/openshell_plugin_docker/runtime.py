"""The supervisor's relocatable runtime, mounted read-only at ``/.openshell`` in every sandbox container.

A user's image needs neither Python nor OpenShell: the container runs the
gateway host's own interpreter and packages, made independent of the image's
C library. A runtime directory under ``/var/cache/openshell/runtime-<key>/``
(``$OPENSHELL_RUNTIME_CACHE`` moves it) holds::

    bin/python3            a copy of the host interpreter, patched (patchelf):
                           loader /.openshell/lib/ld-linux-*.so.*, RPATH /.openshell/lib,
                           and every bundled library as DT_NEEDED, so each one is
                           loaded from the bundle before any extension module asks
                           for it by soname (extension modules with a RUNPATH never
                           consult the interpreter's RPATH)
    lib/*.so*              the host's loader, C library and every library the
                           interpreter and its extension modules need (from ldd),
                           plus those loaded by name through ctypes (CTYPES_LIBS:
                           libseccomp), which no ELF file names
    lib/python3.X/site-packages/openshell-runtime.pth
                           adds the mounted package directories below to sys.path
    pyvenv.cfg             a venv whose "home" is base/bin: the standard library is
    base/lib/python3.X     ← the host's standard library (bind mount, read-only)
    site/<n>               ← each package directory of the host's sys.path (bind mounts)

The key hashes the interpreter, the sys.path directories and every shared
object in them, so a new package or a rebuilt interpreter makes a new runtime;
source edits of editable installs need none (their directories are mounted).

Old runtimes (another interpreter or package set: every rebuild of a venv, every
worktree) are pruned by :func:`prune_runtimes` when the driver has its own:
never the current one, one a container of the engine mounts, or one used in
the last ``PRUNE_GRACE`` seconds (``ensure_runtime`` and every create touch the
directory, so another gateway's runtime stays while that gateway works).

Images it works with: any Linux image of the host's architecture with a
``/bin/sh`` (the sandbox's commands run from the image; the supervisor needs
nothing from it). An image without ``/bin/sh`` is refused with one clear error.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MOUNT = "/.openshell"
CACHE_ROOT = Path(os.environ.get("OPENSHELL_RUNTIME_CACHE", "/var/cache/openshell"))
PREFIX = "runtime-"
PARTIAL_PREFIX = ".runtime-"  # a build in progress (or one a crash left behind)
DOOMED_PREFIX = ".prune-"  # renamed away by a prune that did not finish
PRUNE_GRACE = 3600.0  # seconds: a runtime used (or a build touched) more recently is kept
#: extension modules whose libraries are not bundled (GUI, tests): never used by a supervisor
_SKIP = re.compile(r"(_tkinter|_test|xxlimited|_ctypes_test)")
#: libraries the supervisor loads by name through ctypes (``find_library``), which no
#: ELF file names as DT_NEEDED, so ldd would not find them: bundled explicitly
CTYPES_LIBS = ("seccomp",)
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(/\S+)\s+\(0x[0-9a-f]+\)$|^\s*(/\S+)\s+\(0x[0-9a-f]+\)$")

_PTH_HOOK = '''"""Loaded by openshell-runtime.pth: ctypes.util.find_library looks in the bundle first
(the image's ldconfig cache does not know the bundled libraries).

ctypes.util is patched when something imports it, not here: importing it at start-up
(re, shutil, subprocess ...) put 20-50 ms on every supervisor start in a container."""
import sys as _sys

_LIB = "/.openshell/lib"


def _patch(module):
    orig = module.find_library

    def find_library(name):
        import os

        prefix = "lib" + name + ".so"
        try:
            found = sorted(f for f in os.listdir(_LIB) if f.startswith(prefix))
        except OSError:
            found = []
        # the full path: the image's loader cache and default directories do not know the bundle
        return _LIB + "/" + found[0] if found else orig(name)

    module.find_library = find_library


class _PatchOnImport:
    """A meta path finder that only wraps the loader of ``ctypes.util``; the other finders find it."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "ctypes.util":
            return None
        for finder in _sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                loader_exec = spec.loader.exec_module

                def exec_module(module):
                    loader_exec(module)
                    _patch(module)

                spec.loader.exec_module = exec_module
                return spec
        return None


if "ctypes.util" in _sys.modules:
    _patch(_sys.modules["ctypes.util"])
else:
    _sys.meta_path.insert(0, _PatchOnImport)
'''


class RuntimeError_(RuntimeError):
    """The runtime could not be built (patchelf or ldd missing or failing)."""


@dataclass(frozen=True)
class Runtime:
    """A built runtime and how to mount it.

    :ivar path: the runtime directory on the host.
    :ivar mounts: ``(host path, container path)`` read-only bind mounts, outermost first.
    :ivar python: the interpreter's path inside the container.
    """

    path: Path
    mounts: tuple[tuple[str, str], ...]
    python: str = f"{MOUNT}/bin/python3"


def _host_sys_path() -> list[str]:
    """The interpreter's sys.path as a fresh ``python -I`` sees it: no script directory,
    no ``$PYTHONPATH``, no user site (so the gateway and the CLI build the same runtime)."""
    proc = subprocess.run([sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return list(sys.path)
    return [str(p) for p in json.loads(proc.stdout)]


def _site_dirs(stdlib: str) -> list[str]:
    out: list[str] = []
    for p in _host_sys_path():
        if not p or not os.path.isdir(p):
            continue
        real = os.path.realpath(p)
        if real == stdlib or real.startswith(stdlib + os.sep) or real in out:
            continue
        out.append(real)
    return out


def _elf_files(dirs: list[str]) -> list[str]:
    out = []
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs[:] = [s for s in subdirs if s not in ("test", "tests", "__pycache__", "idlelib", "tkinter")]
            for f in files:
                if (".so" in f) and not _SKIP.search(f):
                    path = os.path.join(root, f)
                    if os.path.isfile(path) and not os.path.islink(path):
                        out.append(path)
    return sorted(out)


def _ctypes_libs(names: tuple[str, ...] = CTYPES_LIBS) -> list[str]:
    """Host paths of the libraries ``names`` (``find_library`` names, e.g. ``seccomp``).

    :raises RuntimeError_: one is not installed on the gateway host (the supervisor needs it).
    """
    out = []
    for name in names:
        soname = ctypes.util.find_library(name)
        path = None
        if soname:
            path = next((p for p in _ldconfig().get(soname, []) if os.path.exists(p)), None)
        if path is None:
            raise RuntimeError_(f"lib{name} not found on the gateway host; the sandbox supervisor needs it (apt-get install lib{name}2)")
        out.append(os.path.realpath(path))
    return out


def _ldconfig() -> dict[str, list[str]]:
    """soname → paths, from ``ldconfig -p`` (the host's cache), native architecture first."""
    proc = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False, env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"})
    found: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines()[1:]:
        m = re.match(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)$", line)
        if m:
            found.setdefault(m.group(1), []).append(m.group(3))
    return found


def _key(exe: str, stdlib: str, sites: list[str], elves: list[str]) -> str:
    h = hashlib.sha256(b"runtime-v3\0" + _PTH_HOOK.encode())  # a new hook is a new runtime
    for path in [exe, *elves]:
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update("\0".join([stdlib, *sites]).encode())
    return h.hexdigest()[:16]


def _ldd(paths: list[str]) -> dict[str, str]:
    """soname → host path of every library ``paths`` need (the loader under its own name)."""
    libs: dict[str, str] = {}
    for path in paths:
        proc = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            m = _LDD_LINE.match(line)
            if not m:
                continue
            if m.group(1):
                libs.setdefault(m.group(1), m.group(2))
            else:
                libs.setdefault(os.path.basename(m.group(3)), m.group(3))
    return libs


def _compile(sites: list[str]) -> None:
    """Bring the byte code of the package directories up to date (what the host's own
    imports would do): they are mounted read-only, so a stale ``.pyc`` (an edited
    editable install) would be compiled again by every supervisor start, ~40 ms per
    large module. Best effort; only stale files are written."""
    import compileall

    for site in sites:
        try:
            compileall.compile_dir(site, quiet=2, workers=1)
        except Exception:  # noqa: BLE001 - read-only or odd trees: the supervisor compiles in memory
            continue


def _soname(patchelf: str, path: str) -> str:
    """The ``DT_SONAME`` of a library (``libseccomp.so.2``), else its file name."""
    proc = subprocess.run([patchelf, "--print-soname", path], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or os.path.basename(path)


def ensure_runtime(cache_root: Path = CACHE_ROOT) -> Runtime:
    """Build (once per key) and describe the runtime of the running interpreter.

    :raises RuntimeError_: ``patchelf`` is missing, or the interpreter cannot be patched.
    """
    exe = os.path.realpath(sys.executable)
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    sites = _site_dirs(stdlib)
    dynload = os.path.join(stdlib, "lib-dynload")
    elves = _elf_files([dynload, *sites]) + _ctypes_libs()
    key = _key(exe, stdlib, sites, elves)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_root / f"{PREFIX}{key}"
    if not (target / "bin" / "python3").is_file():
        _build(target, exe, [exe, *elves], version, len(sites))
    touch(target)
    _compile(sites)
    mounts = [(str(target), MOUNT), (stdlib, f"{MOUNT}/base/lib/{version}")]
    mounts += [(site, f"{MOUNT}/site/{i}") for i, site in enumerate(sites)]
    return Runtime(path=target, mounts=tuple(mounts))


def _build(target: Path, exe: str, elves: list[str], version: str, nsites: int) -> None:
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        raise RuntimeError_("patchelf not found; install it (apt-get install patchelf) or run scripts/setup.sh")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=target.parent))
    try:
        libdir = tmp / "lib"
        libdir.mkdir()
        libs = _ldd(elves)
        for path in _ctypes_libs():  # the ctypes-loaded libraries themselves, not only what they need
            libs.setdefault(_soname(patchelf, path), path)
        loader = next((n for n in libs if n.startswith("ld-linux")), None)
        if loader is None:
            raise RuntimeError_(f"ldd found no dynamic loader for {exe}")
        for soname, path in libs.items():
            shutil.copy2(os.path.realpath(path), libdir / soname)
        (tmp / "bin").mkdir()
        py = tmp / "bin" / "python3"
        shutil.copy2(exe, py)
        argv = [patchelf, "--set-interpreter", f"{MOUNT}/lib/{loader}", "--force-rpath", "--set-rpath", f"{MOUNT}/lib"]
        for soname in sorted(libs):
            if soname != loader and not soname.startswith(("libc.so", "libpython")):
                argv += ["--add-needed", soname]
        proc = subprocess.run([*argv, str(py)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError_(f"patchelf {exe} failed: {proc.stderr.strip()[-400:]}")
        base = tmp / "base"
        (base / "bin").mkdir(parents=True)
        (base / "lib" / version).mkdir(parents=True)
        os.symlink("../../bin/python3", base / "bin" / "python3")
        (tmp / "pyvenv.cfg").write_text(f"home = {MOUNT}/base/bin\ninclude-system-site-packages = false\n")
        site_packages = tmp / "lib" / version / "site-packages"
        site_packages.mkdir(parents=True)
        for i in range(nsites):
            (tmp / "site" / str(i)).mkdir(parents=True)
        (site_packages / "_openshell_runtime.py").write_text(_PTH_HOOK)
        # addsitedir also reads the .pth files of a package directory (namespace packages);
        # the editable-install ones name host paths, which do not exist here and are skipped.
        lines = ["import _openshell_runtime"] + [f"import site; site.addsitedir('{MOUNT}/site/{i}')" for i in range(nsites)]
        (site_packages / "openshell-runtime.pth").write_text("\n".join(lines) + "\n")
        for p in [tmp, *tmp.rglob("*")]:
            if not p.is_symlink():
                os.chmod(p, 0o755 if p.is_dir() or p.parent.name == "bin" or p.suffix == "" else 0o644)
        for so in libdir.iterdir():
            os.chmod(so, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:  # another build finished first: keep it
            if not (target / "bin" / "python3").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def touch(path: Path) -> None:
    """Mark a runtime as used now (its directory's mtime), so a prune of another gateway keeps it."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune_runtimes(keep: Path, in_use: set[str], cache_root: Path = CACHE_ROOT, grace: float = PRUNE_GRACE, now: float | None = None) -> list[Path]:
    """Remove the runtimes of ``cache_root`` nobody uses: every ``runtime-*`` and
    partial ``.runtime-*`` directory except ``keep``, one whose path (resolved) is in
    ``in_use`` (the host paths containers of the engine mount, running or stopped),
    and one used or built less than ``grace`` seconds ago (mtime).

    Each is renamed away first (atomic: a gateway never finds a half-removed
    runtime under its key), then removed. Errors are skipped: pruning is best effort.

    :returns: the directories removed.
    """
    now = time.time() if now is None else now
    keep_real = os.path.realpath(keep)
    used = {os.path.realpath(p) for p in in_use}
    removed: list[Path] = []
    try:
        entries = list(cache_root.iterdir())
    except OSError:
        return removed
    for d in entries:
        if not d.name.startswith((PREFIX, PARTIAL_PREFIX, DOOMED_PREFIX)) or d.is_symlink() or not d.is_dir():
            continue
        real = os.path.realpath(d)
        if real == keep_real or real in used:
            continue
        try:
            if now - d.stat().st_mtime < grace:
                continue
            doomed = d
            if not d.name.startswith(DOOMED_PREFIX):
                doomed = d.with_name(f"{DOOMED_PREFIX}{d.name.lstrip('.')}-{os.getpid()}")
                os.rename(d, doomed)
        except OSError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(d)
    return removed


def find_library_hook_source() -> str:
    """The source of the ``find_library`` hook module (for tests)."""
    return _PTH_HOOK


__all__ = ["MOUNT", "Runtime", "RuntimeError_", "ensure_runtime", "find_library_hook_source", "prune_runtimes", "touch"]
_ = ctypes.util  # imported so mypy checks the hook's target module exists
