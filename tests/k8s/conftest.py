"""Kubernetes tests: the chart (needs the pinned helm) and the real test cluster
(needs scripts/k8s/start.sh). Each module skips with the command that makes
what it lacks."""

from __future__ import annotations

import sys
from pathlib import Path

# Test modules import k8s_env from this folder (pytest runs with --import-mode=importlib).
# Appended, not prepended: this file is a module named "conftest" too, and the other
# suites' "from conftest import ..." must keep finding tests/conftest.py.
sys.path.append(str(Path(__file__).resolve().parent))
