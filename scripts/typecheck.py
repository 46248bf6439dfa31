#!/usr/bin/env python3
"""Run mypy over every distribution's packages, one mypy run per distribution.

    python scripts/typecheck.py [ROOT]      # exit 0: no errors; 1: some run failed

Distributions are found by globbing ``pyproject.toml`` (core, CLI, every plugin),
so a new plugin needs no edit here; ``nox -s typecheck`` and ``scripts/test.sh``
both call this script. Each distribution is checked on its own so an error is
reported under the distribution that owns it; settings come from ``mypy.ini``.
Needs mypy importable by the running interpreter (``scripts/setup.sh`` puts it
in ``.venv``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def distributions(root: Path) -> list[Path]:
    """Core, the CLI, then every plugin distribution below ``root``, in a stable order."""
    plugins = sorted(p.parent for p in (root / "openshell-plugins").glob("*/*/pyproject.toml"))
    return [root / "openshell-core", root / "openshell-cli", *plugins]


def packages(dist: Path) -> list[Path]:
    """The import packages in ``dist/src`` (each directory holding an ``__init__.py``)."""
    return sorted(p.parent for p in (dist / "src").glob("*/__init__.py"))


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve() if len(argv) > 1 else Path(__file__).resolve().parent.parent
    failed: list[str] = []
    for dist in distributions(root):
        pkgs = packages(dist)
        if not pkgs:
            continue
        name = dist.relative_to(root).as_posix()
        print(f"==> mypy {name}", flush=True)
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(root / "mypy.ini"), *map(str, pkgs)]
        if subprocess.run(cmd, cwd=root).returncode != 0:
            failed.append(name)
    if failed:
        print(f"typecheck: mypy found errors in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
