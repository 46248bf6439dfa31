#!/usr/bin/env python3
"""Fail when the project's own modules import each other in a cycle.

    python3 scripts/import_cycles.py [ROOT]      # exit 0: none; 1: lists each cycle

Every distribution's ``src/`` tree under ROOT (default: the repository) is read
with :mod:`ast`, nothing is imported. An import counts wherever it is written,
also inside a function (deferring an import hides a cycle, it does not remove
it); only ``if TYPE_CHECKING:`` blocks are skipped. A package importing its own
submodules (re-exports in ``__init__``) is not a cycle. Generated ``*_pb2``
modules are left out.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SKIP_DIRS = {".venv", ".nox", "node_modules", "templates", "__pycache__"}


def find_modules(root: Path) -> dict[str, Path]:
    """Map dotted module names to files for every ``src/`` directory below ``root``."""
    modules: dict[str, Path] = {}
    for src in sorted(root.glob("**/src")):
        if SKIP_DIRS.intersection(src.relative_to(root).parts) or not src.is_dir():
            continue
        for path in sorted(src.rglob("*.py")):
            if SKIP_DIRS.intersection(path.relative_to(src).parts) or path.stem.endswith(("_pb2", "_pb2_grpc")):
                continue
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts:
                modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            elif isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            else:
                stack.append(child)


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def known(dotted: str) -> str | None:
        # ``import a.b.c`` of a function or class ``c``: the module is the longest known prefix
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(m for m in (known(a.name) for a in node.names) if m)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            target = known(f"{base}.{alias.name}") if alias.name != "*" else None
            if target is None or target == package:
                target = known(base)
            if target:
                found.add(target)
    return {m for m in found if m != name and not m.startswith(name + ".")}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next((w for w in edges if w not in index or w in on_stack), None)
            if nxt is not None:
                if nxt in index:
                    low[node] = min(low[node], index[nxt])
                else:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent)
    modules = find_modules(root)
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    cycles = find_cycles(graph)
    for cycle in cycles:
        print(f"import cycle: {' <-> '.join(cycle)}")
    if cycles:
        print(f"{len(cycles)} import cycle(s): give the shared pieces a module that imports neither side", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
