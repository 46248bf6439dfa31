#!/usr/bin/env python3
"""Benchmark harness entry point: ``python bench/run.py [--quick] [figure ...]``.

See ``openshell_bench.cli`` for the options and BENCHMARKS.md for the figures.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openshell_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
