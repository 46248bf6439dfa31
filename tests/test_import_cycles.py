"""scripts/import_cycles.py: the lint check that fails on an import cycle among our modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_cycles.py"


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=120, check=False)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / "dist" / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_repository_has_no_import_cycle():
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cycle_hidden_inside_a_function_fails_the_check(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\n",
            "pkg/a.py": "from pkg.b import g\n\ndef f():\n    return g()\n",
            "pkg/b.py": "def g():\n    from pkg import a  # deferred, still a cycle\n    return a\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n",
        },
    )
    result = _run(tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["import cycle: pkg.a <-> pkg.b"]


def test_type_checking_imports_and_package_reexports_are_not_cycles(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\nfrom .b import g\n",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import g\n\ndef f(): ...\n",
            "pkg/b.py": "from pkg.a import f\n\ndef g(): ...\n",
        },
    )
    result = _run(tmp_path)
    assert result.returncode == 0, result.stdout
