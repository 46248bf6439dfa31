#!/usr/bin/env bash
# The whole test suite: lint, import cycles and mypy (scripts/typecheck.py, as
# nox -s typecheck), then every distribution's tests and the end-to-end tests
# on real kernel features (root, Landlock, seccomp, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OPENSHELL_STRICT_PLUGINS=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/import_cycles.py
.venv/bin/python scripts/typecheck.py
exec .venv/bin/python -m pytest "$@"
