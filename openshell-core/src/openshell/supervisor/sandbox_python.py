"""A read-only ``python`` with ``cloudpickle`` for every sandbox (the SDK's ``exec_python``).

The published SDK runs ``python -c <bootstrap>`` in the sandbox and unpickles the
caller's function with ``cloudpickle``. Hosts often have only ``python3`` and no
cloudpickle, so the supervisor builds a small venv (about 150 KiB, a dozen
inodes) in the sandbox's own files tmpfs when it starts::

    <sandbox files tmpfs>/python/
        pyvenv.cfg                       home = dirname(host python3), system site-packages on
        bin/python -> /usr/bin/python3   the host interpreter the sandbox can already read
        lib/pythonX.Y/site-packages/cloudpickle/   copied from the supervisor's own install

and the sandbox gets it bind-mounted read-only at :data:`SANDBOX_PYTHON_DIR`
(under ``/usr``, which the Landlock baseline already grants read-only, and never
writable: the bind itself is read-only). Built per sandbox, on its tmpfs, so the
bind's source names no host path (``/proc/self/mountinfo`` shows the tmpfs) and
nothing is shared between sandboxes. ``bin`` goes on ``PATH`` before the system
directories, so ``python`` is ours; ``python3`` stays the system one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("openshell.supervisor")

#: where sandboxes see the prepared venv
SANDBOX_PYTHON_DIR = "/usr/lib/openshell/python"
#: its ``bin`` (holds only ``python``)
SANDBOX_PYTHON_BIN = SANDBOX_PYTHON_DIR + "/bin"
#: interpreters the sandbox can run (under the read-only baseline), first found wins
PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")
_VERSIONED_NAME = re.compile(r"python(\d+\.\d+)$")


class SandboxPythonUnavailable(RuntimeError):
    """No usable interpreter or no cloudpickle: sandboxes get no ``python`` shim."""


def _find_python() -> str:
    """The first candidate interpreter that exists and is executable.

    :raises SandboxPythonUnavailable: none is.
    """
    for path in PYTHON_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise SandboxPythonUnavailable(f"no python3 among {', '.join(PYTHON_CANDIDATES)}")


def _python_version(path: str) -> str:
    """``X.Y`` of the interpreter at ``path``: from the name it resolves to
    (``python3.11``), else by running it once.

    :raises SandboxPythonUnavailable: it does not run.
    """
    named = _VERSIONED_NAME.search(os.path.realpath(path))
    if named:
        return named.group(1)
    try:
        proc = subprocess.run(
            [path, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            timeout=30,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxPythonUnavailable(f"{path} does not run: {exc}") from None
    version = proc.stdout.decode().strip()
    if version.count(".") == 1 and version.replace(".", "").isdigit():
        return version
    raise SandboxPythonUnavailable(f"{path} reported no version")


def _cloudpickle_source() -> Path:
    """cloudpickle's package directory, found without importing it (nor
    ``importlib.metadata``: a scan of every distribution on each sandbox start)."""
    spec = importlib.util.find_spec("cloudpickle")
    if spec is None or not spec.origin:
        raise SandboxPythonUnavailable("cloudpickle is not installed where the supervisor runs")
    return Path(spec.origin).resolve().parent


def _build(target: Path, python: str, version: str, package: Path) -> None:
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python").symlink_to(python)
    site = target / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True)
    shutil.copytree(package, site / "cloudpickle", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (target / "pyvenv.cfg").write_text(f"home = {os.path.dirname(python)}\ninclude-system-site-packages = true\nversion = {version}\n")
    # Readable by the sandbox user. Never chmod through a symlink: bin/python
    # points at the host's interpreter.
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if name in dirs else 0o644)
    os.chmod(target, 0o755)


def prepare_sandbox_python(target: str | os.PathLike[str]) -> Path:
    """Build the venv at ``target`` (a new path; its parent exists) and return it.

    :param target: where to build, e.g. ``<files tmpfs>/python``; replaced when it
        exists (a restarted supervisor).
    :raises SandboxPythonUnavailable: no interpreter or no cloudpickle.
    :raises OSError: ``target`` cannot be written.
    """
    python = _find_python()
    package = _cloudpickle_source()
    version = _python_version(python)
    final = Path(target)
    shutil.rmtree(final, ignore_errors=True)
    _build(final, python, version, package)
    log.debug("event=sandbox_python_ready python=%s version=%s cloudpickle=%s", python, version, package)
    return final
