"""Regenerate ``openshell-core/src/openshell/_proto`` from ``proto/openshell/v1/*.proto``.

    python openshell-core/proto/generate.py            # rewrite the committed output
    python openshell-core/proto/generate.py --check    # exit 1 when it is stale

protoc names modules after their directory (``openshell/v1/openshell_pb2.py``
importing ``from openshell.v1 import datamodel_pb2``); we flatten them into
``openshell._proto`` and make those imports package-relative, so the generated
code works wherever the ``openshell`` package is installed.
"""

from __future__ import annotations

import argparse
import importlib.resources
import pathlib
import re
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "openshell" / "v1"
TARGET = HERE.parent / "src" / "openshell" / "_proto"

INIT = '''# ruff: noqa
"""Generated gRPC code (do not edit); regenerate with ``nox -s protos``.

Sources: ``openshell-core/proto/openshell/v1/*.proto``.
"""
'''

_IMPORT = re.compile(r"^from openshell\.v1 import (\w+_pb2)", re.MULTILINE)


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write the generated modules (flat, package-relative imports) into ``out_dir``.

    :returns: the files written, sorted.
    :raises RuntimeError: when protoc fails.
    """
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    protos = sorted(SOURCES.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p.relative_to(HERE)) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        written = []
        for src in sorted((pathlib.Path(tmp) / "openshell" / "v1").iterdir()):
            # Generated code is not ours to lint (``nox -s lint`` checks src/).
            text = "# ruff: noqa\n" + _IMPORT.sub(r"from . import \1", src.read_text())
            dest = out_dir / src.name
            dest.write_text(text)
            written.append(dest)
    init = out_dir / "__init__.py"
    init.write_text(INIT)
    written.append(init)
    return sorted(written)


def stale_files(target: pathlib.Path = TARGET) -> list[str]:
    """Return names of files in ``target`` that differ from a fresh generation (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(pathlib.Path(tmp))}
    current = {p.name: p.read_bytes() for p in target.glob("*") if p.is_file() and p.suffix in (".py", ".pyi")}
    names = sorted(set(fresh) | set(current))
    return [n for n in names if fresh.get(n) != current.get(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    opts = parser.parse_args(argv)
    if opts.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {TARGET / name}", file=sys.stderr)
        return 1 if stale else 0
    if TARGET.exists():
        shutil.rmtree(TARGET)
    for path in generate(TARGET):
        print(path.relative_to(HERE.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
